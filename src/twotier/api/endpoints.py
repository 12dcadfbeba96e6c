"""The resource endpoints, as a table: one row per method and path, the only definition.

Each row says what its request takes (the key from the path, the query parameters, the body
model), what its handler does with it (a use case of the resource's policy), and how it is
described (summary, answers). ``api.dispatch`` serves the table: it parses and validates a
request once, answers its 422, calls the handler and sends its ``Answer``. ``api.openapi``
describes the same rows. A handler gets a ``Call``: everything parsed, nothing to re-read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from starlette.types import Scope

from twotier.access.rules import Access
from twotier.api import writes
from twotier.api.access_guard import PRINCIPAL_KEY
from twotier.api.conditional import tags
from twotier.api.errors import ErrorBody
from twotier.api.headers import Headers, wants_cache
from twotier.api.list_query import list_parameters, refused, row_query
from twotier.api.query_parameter import Parameter
from twotier.api.responses import Answer, answer, error, read_answer
from twotier.config import Settings
from twotier.policy import ResourcePolicy
from twotier.resources import Key, Resource
from twotier.service import Service


@dataclass(frozen=True, slots=True)
class Call:
    """One request to an endpoint, parsed and validated: what its handler needs."""

    scope: Scope
    headers: Headers
    service: Service
    policy: ResourcePolicy | None = None
    key: Key | None = None
    #: The body: a model of the endpoint's (``Endpoint.body``), or the parsed JSON itself.
    body: Any = None
    #: The query parameters, converted (absent ones at their defaults).
    query: Mapping[str, Any] = field(default_factory=dict)


Handler = Callable[[Call], Awaitable[Answer]]


@dataclass(frozen=True, slots=True)
class Documented:
    """An answer as the OpenAPI document describes it: its schema is a model, or none."""

    description: str
    model: type[BaseModel] | None = None
    headers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    """One row of the table."""

    method: str
    #: The path template, as the OpenAPI document and the metrics name it.
    path: str
    #: The operation's id in the OpenAPI document.
    name: str
    handler: Handler
    summary: str
    tag: str
    #: The resource whose key the path names, if it names one.
    resource: Resource | None = None
    keyed: bool = False
    #: The model a body must validate against; ``any_body``: the parsed JSON as it is.
    body: type[BaseModel] | None = None
    any_body: bool = False
    #: The JSON Schema of an ``any_body`` (the handler checks it).
    body_schema: Mapping[str, Any] | None = None
    body_examples: Mapping[str, Any] = field(default_factory=dict)
    parameters: tuple[Parameter, ...] = ()
    #: Parameters refused with a reason of their own (a field no index serves).
    refused: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    #: What it answers besides the errors every endpoint may answer.
    answers: Mapping[int, Documented] = field(default_factory=dict)


@dataclass(frozen=True)
class Routes:
    """The rows under one first path segment: ``/{name}``, ``/{name}/{key}`` and
    ``/{name}/{key}/{relation}``."""

    resource: Resource | None
    collection: Mapping[str, Endpoint]
    item: Mapping[str, Endpoint] = field(default_factory=dict)
    #: ``/{name}/{key}/{relation}``: each relation's rows (``api.relations``).
    nested: Mapping[str, Mapping[str, Endpoint]] = field(default_factory=dict)


class EndpointTable:
    """Every row, found by a request's first path segment."""

    def __init__(self, routes: Mapping[str, Routes]) -> None:
        self.routes = dict(routes)

    def __iter__(self) -> Any:
        for routes in self.routes.values():
            yield from routes.collection.values()
            yield from routes.item.values()
            for rows in routes.nested.values():
                yield from rows.values()

    def match(self, path: str) -> tuple[Routes, str | None] | None:
        """The rows a path falls under, and the rest of it after ``/{name}/`` (None for
        ``/{name}`` itself); None if no row's first segment is the path's."""
        cut = path.find("/", 1)
        if cut < 0:
            routes = self.routes.get(path[1:])
            return None if routes is None else (routes, None)
        routes = self.routes.get(path[1:cut])
        return None if routes is None else (routes, path[cut + 1 :])


# -- the rows of one resource ---------------------------------------------------------------

_X_CACHE = {
    "description": "How the read was served: HIT, MISS or BYPASS.",
    "schema": {"type": "string", "enum": ["HIT", "MISS", "BYPASS"]},
}
_ETAG = {"description": "The row's version.", "schema": {"type": "string"}}
_NEW_ETAG = {"description": "The row's new version.", "schema": {"type": "string"}}
_LOCATION = {"description": "The new row's path.", "schema": {"type": "string"}}


async def bypassing(scope: Scope) -> None:
    """A read that skips the cache: Denied (429) past the budget of those without a key."""
    access: Access | None = getattr(scope["app"].state, "access", None)
    if access is not None:
        await access.may_bypass(scope.get(PRINCIPAL_KEY))


async def use_cache(call: Call) -> bool:
    """Whether a read may be answered from the cache (``Cache-Control: no-cache`` skips
    it, within the budget of those without a key)."""
    if not call.headers or wants_cache(call.headers):
        return True
    await bypassing(call.scope)
    return False


def resource_endpoints(resource: Resource, settings: Settings) -> Routes:
    """The rows of ``/{resource}`` and ``/{resource}/{key}``."""
    name, singular, key = resource.name, resource.singular, resource.path_parameter
    item_path = f"/{name}/{{{key}}}"
    not_there = {404: Documented(f"No {singular} with that {resource.key}.", ErrorBody)}
    precondition = {
        412: Documented(
            "If-Match named a version the row is no longer at (or a row that is not there); "
            "nothing was written. ETag: the row's current version.",
            ErrorBody,
            headers={"ETag": {"schema": {"type": "string"}}},
        )
    }
    conflict = (
        {409: Documented("A row with this key exists already; nothing was written.", ErrorBody)}
        if not resource.auto_key
        else {}
    )

    def root(call: Call) -> str:
        return str(call.scope.get("root_path", ""))

    async def read(call: Call) -> Answer:
        assert call.policy is not None
        assert call.key is not None
        if not call.headers:  # the common read: nothing asked of it but the row
            return read_answer(await call.policy.read(call.key), resource, call.key)
        served = await call.policy.read(call.key, use_cache=await use_cache(call))
        unless = tags(call.headers.get(b"if-none-match"))
        return read_answer(served, resource, call.key, unless)

    async def find(call: Call) -> Answer:
        assert call.policy is not None
        query = row_query(resource, call.query, call.policy.cursors)
        if isinstance(query, list):
            return error(422, query)
        served = await call.policy.find(query, use_cache=await use_cache(call))
        assert served.body is not None
        return answer(200, served.body, outcome=served.outcome)

    async def create(call: Call) -> Answer:
        assert call.policy is not None
        return await writes.create(call.policy, call.body, root(call))

    async def replace(call: Call) -> Answer:
        assert call.policy is not None
        assert call.key is not None
        wanted = tags(call.headers.get(b"if-match"))
        return await writes.replace(call.policy, call.key, call.body, wanted, root(call))

    async def patch(call: Call) -> Answer:
        assert call.policy is not None
        assert call.key is not None
        wanted = tags(call.headers.get(b"if-match"))
        return await writes.patch(call.policy, call.key, call.body, wanted)

    async def remove(call: Call) -> Answer:
        assert call.policy is not None
        assert call.key is not None
        return await writes.delete(call.policy, call.key, tags(call.headers.get(b"if-match")))

    row = Documented("The row.", resource.out_model)

    def item(
        method: str,
        action: str,
        handler: Handler,
        summary: str,
        answers: Mapping[int, Documented],
        body: type[BaseModel] | None = None,
    ) -> Endpoint:
        return Endpoint(
            method,
            item_path,
            f"{action}_{singular}",
            handler,
            summary,
            name,
            resource=resource,
            keyed=True,
            body=body,
            answers=answers,
        )

    filterable = ", ".join(resource.filterable)
    return Routes(
        resource,
        collection={
            "GET": Endpoint(
                "GET",
                f"/{name}",
                f"list_{name}",
                find,
                f"List {name}, filtered, in order, a page at a time (cached)",
                name,
                resource=resource,
                parameters=list_parameters(resource, settings),
                refused=refused(resource, settings),
                description="Filters match exactly; each is one of the fields an index serves "
                f"({filterable}). Operators in brackets compare, test membership of a set, a "
                "prefix or null (`xp[gte]=100`, `color[in]=red,blue`, `name[prefix]=Ca`, "
                "`field[null]=true`); `order` and `fields` choose the order and the fields. "
                "Any other parameter, one given twice, or a query no index serves, is a 422.",
                answers={
                    200: Documented(
                        "A page of rows.", resource.page_model, headers={"X-Cache": _X_CACHE}
                    )
                },
            ),
            "POST": Endpoint(
                "POST",
                f"/{name}",
                f"create_{singular}",
                create,
                f"Create a {singular}",
                name,
                resource=resource,
                body=resource.create_model,
                answers={
                    201: Documented(
                        f"The new {singular}.",
                        resource.out_model,
                        headers={"Location": _LOCATION, "ETag": _NEW_ETAG},
                    ),
                    **conflict,
                },
            ),
        },
        item={
            "GET": item(
                "GET",
                "read",
                read,
                f"Read one {singular} (cached)",
                {
                    200: Documented(
                        f"The {singular}.",
                        resource.out_model,
                        headers={"X-Cache": _X_CACHE, "ETag": _ETAG},
                    ),
                    304: Documented("The client's version is current (If-None-Match)."),
                    **not_there,
                },
            ),
            "PUT": item(
                "PUT",
                "replace",
                replace,
                f"Replace a {singular}" + ("" if resource.auto_key else " (or create it)"),
                {
                    200: Documented(row.description, row.model, headers={"ETag": _NEW_ETAG}),
                    **(
                        {}
                        if resource.auto_key
                        else {
                            201: Documented(
                                f"A new {singular}, made under the key given.",
                                resource.out_model,
                                headers={"Location": _LOCATION, "ETag": _NEW_ETAG},
                            )
                        }
                    ),
                    **not_there,
                    **precondition,
                },
                resource.replace_model,
            ),
            "PATCH": item(
                "PATCH",
                "patch",
                patch,
                "Change some fields",
                {
                    200: Documented(row.description, row.model, headers={"ETag": _NEW_ETAG}),
                    **not_there,
                    **precondition,
                },
                resource.patch_model,
            ),
            "DELETE": item(
                "DELETE",
                "delete",
                remove,
                f"Delete a {singular}",
                {
                    204: Documented(f"The {singular} is gone.", headers={"ETag": _ETAG}),
                    **not_there,
                    **precondition,
                },
            ),
        },
    )
