"""The rows of a resource's relations (``resources.relations``): nested collections and
embedding, composed from the entries each part has in the cache.

- ``GET /artists/{id}/albums``: the rows that refer to a row, a page at a time, read as
  ``GET /albums?artist_id={id}`` is (one cached lookup entry a page); a 404 when the row
  referred to is not there.
- ``GET /albums/{id}?embed=artist,tracks``: the row, with each relation named beside its
  fields: the row referred to (or null), or the first page of the rows that refer to it
  (``{"items": […], "next_after": …}``, as a list answers, so a client goes on with the
  nested collection's ``after``). At most one level, each relation at most once.

Each part is read through its own resource's read-through, exactly as it would be read
alone, so an embedded answer is never staler than its parts; nothing composed is cached,
so a write to a part invalidates what it did before (that part's entry), and nothing else
has to be found. The answer carries no ``ETag``: it is no one row's version.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Mapping, Sequence
from typing import Annotated, Any

import orjson
from pydantic import BeforeValidator, TypeAdapter, WithJsonSchema

from twotier.api.endpoints import (
    Call,
    Documented,
    Endpoint,
    Handler,
    Routes,
    use_cache,
)
from twotier.api.errors import ErrorBody
from twotier.api.list_query import key_after, page_limit
from twotier.api.query_parameter import Parameter
from twotier.api.responses import Answer, answer, read_answer
from twotier.config import Settings
from twotier.policy import Outcome, ResourcePolicy, Served
from twotier.resources import Resource
from twotier.resources.resource import Relation
from twotier.store.base import Query

_X_CACHE = {
    "description": "How the parts were read: HIT when every one was, BYPASS when any skipped "
    "the cache, else MISS.",
    "schema": {"type": "string", "enum": ["HIT", "MISS", "BYPASS"]},
}


def with_relations(
    routes: Routes, resource: Resource, resources: Mapping[str, Resource], settings: Settings
) -> Routes:
    """``routes`` with its resource's relations (``resources``: every one, by name):
    ``embed`` on the read of one row, and a nested collection for each relation to many."""
    if not resource.relations:
        return routes
    read = routes.item["GET"]
    names = [relation.name for relation in resource.relations]
    embedding = dataclasses.replace(
        read,
        handler=_embedding(read.handler, resource, settings),
        parameters=(*read.parameters, _embed_parameter(resource)),
        description=(
            f"`embed` names relations to answer with the row ({', '.join(names)}): each is a "
            "row (or null), or the first page of the rows that refer to this one. Such an "
            "answer carries no ETag."
        ),
    )
    nested = {
        relation.name: {"GET": _nested(resource, relation, resources[relation.resource], settings)}
        for relation in resource.relations
        if not relation.to_one
    }
    return dataclasses.replace(
        routes, item={**routes.item, "GET": embedding}, nested={**routes.nested, **nested}
    )


def _embed_parameter(resource: Resource) -> Parameter:
    names = [relation.name for relation in resource.relations]

    def relations(text: object) -> tuple[str, ...]:
        if not isinstance(text, str):
            return text  # type: ignore[return-value]  # the validator below says what
        if not text:
            raise ValueError(f"names no relation (it has: {', '.join(names)})")
        asked = [name.strip() for name in text.split(",")]
        for name in asked:
            if resource.relation(name) is None:
                raise ValueError(
                    f"{name!r} is not a relation of {resource.name} (it has: {', '.join(names)})"
                )
        if len(set(asked)) != len(asked):
            raise ValueError("names a relation twice")
        return tuple(asked)

    text = {"type": "string", "pattern": f"^({'|'.join(names)})(,({'|'.join(names)}))*$"}
    adapter: TypeAdapter[Any] = TypeAdapter(
        Annotated[tuple[str, ...], BeforeValidator(relations), WithJsonSchema(text)]
    )
    return Parameter(
        "embed",
        adapter,
        (),
        f"Relations to answer with the row, separated by commas: {', '.join(names)}.",
    )


def _embedding(read: Handler, resource: Resource, settings: Settings) -> Handler:
    async def handler(call: Call) -> Answer:
        asked: tuple[str, ...] = call.query.get("embed") or ()
        if not asked:
            return await read(call)
        cached = await use_cache(call)
        served = await _row(call, resource, cached)
        if isinstance(served, Answer):
            return served
        assert served.body is not None
        values: dict[str, Any] = orjson.loads(served.body)  # the references it holds

        def read_part(name: str) -> Awaitable[Served]:
            relation = resource.relation(name)
            assert relation is not None  # the parameter's validator said so
            other = call.service.resource(relation.resource)
            if relation.to_one:
                return _referred(other, values.get(relation.field), cached)
            return _page(other, relation, call.key, settings.page_limit_default, cached)

        parts = await asyncio.gather(*(read_part(name) for name in asked))  # all at once
        body = served.body[:-1] + b"".join(
            b',"' + name.encode() + b'":' + (part.body or b"null")
            for name, part in zip(asked, parts, strict=True)
        )
        outcome = _combined([served.outcome, *(part.outcome for part in parts)])
        return answer(200, body + b"}", outcome=outcome)

    return handler


async def _row(call: Call, resource: Resource, cached: bool) -> Served | Answer:
    """The row the path names, or the 404 that says it is not there."""
    assert call.policy is not None
    assert call.key is not None
    served = await call.policy.read(call.key, use_cache=cached)
    if served.body is None:
        return read_answer(served, resource, call.key)
    return served


async def _referred(other: ResourcePolicy, value: Any, cached: bool) -> Served:
    """The row a reference names (no body: null, or not there)."""
    if value is None:
        return Served(None, Outcome.HIT)
    key = other.resource.parse_key(str(value))
    if key is None:
        return Served(None, Outcome.HIT)  # a value no key of the other resource can be
    return await other.read(key, use_cache=cached)


async def _page(
    other: ResourcePolicy, relation: Relation, key: Any, limit: int, cached: bool, after: Any = None
) -> Served:
    """A page of the rows of ``other`` whose ``relation.field`` holds ``key``."""
    query = Query(filters=((relation.field, key),), after=after, limit=limit)
    return await other.find(query, use_cache=cached)


def _combined(outcomes: Sequence[Outcome]) -> Outcome:
    if Outcome.BYPASS in outcomes:
        return Outcome.BYPASS
    if all(outcome is Outcome.HIT for outcome in outcomes):
        return Outcome.HIT
    return Outcome.MISS


def _nested(
    resource: Resource, relation: Relation, other: Resource, settings: Settings
) -> Endpoint:
    """``GET /{resource}/{key}/{relation}``: the rows of ``other`` that refer to one."""
    after, limit = key_after(other), page_limit(settings)

    async def handler(call: Call) -> Answer:
        cached = await use_cache(call)
        parent = await _row(call, resource, cached)
        if isinstance(parent, Answer):
            return parent
        rows = call.service.resource(relation.resource)
        given = call.query
        page = await _page(rows, relation, call.key, given["limit"], cached, given["after"])
        assert page.body is not None
        return answer(200, page.body, outcome=_combined([parent.outcome, page.outcome]))

    key = resource.path_parameter
    return Endpoint(
        "GET",
        f"/{resource.name}/{{{key}}}/{relation.name}",
        f"list_{resource.singular}_{relation.name}",
        handler,
        f"List the {relation.resource} whose {relation.field} is this {resource.singular}'s "
        "(cached)",
        resource.name,
        resource=resource,
        keyed=True,
        parameters=(after, limit),
        description=f"As `GET /{relation.resource}?{relation.field}={{{key}}}`, a page at a "
        f"time; a 404 when there is no such {resource.singular}.",
        answers={
            200: Documented("A page of rows.", other.page_model, headers={"X-Cache": _X_CACHE}),
            404: Documented(f"No {resource.singular} with that {resource.key}.", ErrorBody),
        },
    )
