"""``/{resource}``: a declared resource over HTTP. Parse, call its policy, map to a status.

One router per resource, built from its declaration: the path parameter (``hero_id``,
``product_sku``) and its checks, the list filters (one per field), the request and answer
models (so the OpenAPI document has one schema per resource). Plain cached reads by key, and
writes of one row whose body validates, are answered by ``api.hot_path`` in front of these
routes, alike (``api.writes`` is the code both run; a test proves it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, BeforeValidator

from twotier.api import writes
from twotier.api.conditional import Tags, tags
from twotier.api.dependencies import API_KEY, ServiceDep, UseCacheDep
from twotier.api.errors import COMMON_ERRORS, CONFLICT, PRECONDITION_FAILED
from twotier.api.parameters import explain, only_known_parameters
from twotier.api.responses import JSON, read_response
from twotier.config import Settings
from twotier.policy import Served
from twotier.resources import Key, Resource
from twotier.resources.fields import IntegerField, StringField, integer_text
from twotier.store.base import Query as RowQuery

_X_CACHE = {
    "X-Cache": {
        "description": "How the read was served: HIT, MISS or BYPASS.",
        "schema": {"type": "string", "enum": ["HIT", "MISS", "BYPASS"]},
    },
    "ETag": {"description": "The row's version.", "schema": {"type": "string"}},
}
_ETAG = {"ETag": {"description": "The row's new version.", "schema": {"type": "string"}}}


def _served(served: Served) -> Response:
    return Response(served.body, 200, {"X-Cache": served.outcome.value}, media_type=JSON)


def _with_signature(endpoint: Callable[..., Any], *parameters: inspect.Parameter) -> None:
    """Give ``endpoint`` the parameters FastAPI reads (their names come from the resource)."""
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        list(parameters), return_annotation=Response
    )


def _parameter(
    name: str, annotation: Any, default: Any = inspect.Parameter.empty
) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def key_path(resource: Resource) -> Any:
    """The path parameter's annotation: the key's checks (an id's range, a key's length)."""
    key = resource.key_field
    description = f"The {resource.singular}'s {resource.key}."
    if isinstance(key, IntegerField):
        low, high = key.bounds
        # The check after the bounds: before them, pydantic would lose them from the schema.
        return Annotated[
            int, Path(ge=low, le=high, description=description), BeforeValidator(integer_text)
        ]
    assert isinstance(key, StringField)
    return Annotated[
        str, Path(max_length=key.max_length, pattern=key.pattern, description=description)
    ]


def resource_router(resource: Resource, settings: Settings) -> APIRouter:
    router = APIRouter(
        prefix=f"/{resource.name}",
        tags=[resource.name],
        responses=COMMON_ERRORS,
        dependencies=[API_KEY],
    )
    name, singular, key = resource.name, resource.singular, resource.path_parameter
    not_there: dict[int | str, dict[str, Any]] = {
        404: {"description": f"No {singular} with that {resource.key}."}
    }
    service_p = _parameter("service", ServiceDep)
    request_p = _parameter("request", Request)
    key_p = _parameter(key, key_path(resource))

    def policy(service: Any) -> Any:
        return service.resource(name)

    # -- read one -----------------------------------------------------------------------

    async def read(request: Request, service: Any, use_cache: bool, **path: Key) -> Response:
        served = await policy(service).read(path[key], use_cache=use_cache)
        unless = tags(request.scope["headers"], b"if-none-match")
        return read_response(served, resource, path[key], unless)

    _with_signature(read, request_p, service_p, _parameter("use_cache", UseCacheDep), key_p)
    router.add_api_route(
        f"/{{{key}}}",
        read,
        methods=["GET"],
        name=f"read_{singular}",
        response_model=resource.out_model,
        responses={
            200: {"headers": _X_CACHE},
            304: {"description": "The client's version is current (If-None-Match)."},
            **not_there,
        },
        summary=f"Read one {singular} (cached)",
    )

    # -- list -----------------------------------------------------------------------------

    filters = [resource.field(name) for name in resource.filterable]

    async def find(service: Any, use_cache: bool, **given: Any) -> Response:
        after, limit = given.pop("after"), given.pop("limit")
        query = RowQuery(
            tuple((field, value) for field, value in given.items() if value is not None),
            after=after,
            limit=limit,
        )
        return _served(await policy(service).find(query, use_cache=use_cache))

    after_type = resource.key_field.query_type()
    if isinstance(resource.key_field, IntegerField):
        after_p = _parameter(
            "after",
            Annotated[
                int,
                Query(ge=0, le=2**63 - 1, description="Only keys above this (`next_after`)."),
                BeforeValidator(integer_text),
            ],
            0,
        )
    else:
        after_p = _parameter(
            "after",
            Annotated[after_type | None, Query(description="Only keys above this (`next_after`).")],
            None,
        )
    _with_signature(
        find,
        service_p,
        _parameter("use_cache", UseCacheDep),
        *(
            _parameter(field.name, Annotated[field.query_type() | None, Query()], None)
            for field in filters
        ),
        after_p,
        _parameter(
            "limit",
            Annotated[
                int,
                Query(ge=1, le=settings.page_limit_max, description="Rows per page."),
                BeforeValidator(integer_text),
            ],
            settings.page_limit_default,
        ),
    )
    explain(
        find,
        {
            name: "cannot be filtered: no index serves it (the fields that can be: "
            f"{', '.join(resource.filterable)})"
            for name in resource.columns
            if name not in resource.filterable
        },
    )
    router.add_api_route(
        "",
        find,
        methods=["GET"],
        dependencies=[Depends(only_known_parameters)],
        name=f"list_{name}",
        response_model=resource.page_model,
        responses={200: {"headers": {"X-Cache": _X_CACHE["X-Cache"]}}},
        summary=f"List {name}, filtered, by {resource.key}, a page at a time (cached)",
        description="Filters match exactly; each is one of the fields an index serves "
        f"({', '.join(resource.filterable)}). Any other parameter, or one given twice, "
        "is a 422.",
    )

    # -- create ---------------------------------------------------------------------------

    async def create(request: Request, service: Any, row: BaseModel) -> Response:
        return await writes.create(policy(service), row, request.scope.get("root_path", ""))

    _with_signature(create, request_p, service_p, _parameter("row", resource.create_model))
    router.add_api_route(
        "",
        create,
        methods=["POST"],
        status_code=201,
        name=f"create_{singular}",
        response_model=resource.out_model,
        responses={
            201: {"headers": {"Location": {"schema": {"type": "string"}}, **_ETAG}},
            **(CONFLICT if not resource.auto_key else {}),
        },
        summary=f"Create a {singular}",
    )

    # -- replace ----------------------------------------------------------------------------

    replace_model = resource.replace_model

    async def replace(request: Request, service: Any, row: BaseModel, **path: Key) -> Response:
        root = request.scope.get("root_path", "")
        return await writes.replace(policy(service), path[key], row, _if_match(request), root)

    _with_signature(replace, request_p, service_p, _parameter("row", replace_model), key_p)
    router.add_api_route(
        f"/{{{key}}}",
        replace,
        methods=["PUT"],
        name=f"replace_{singular}",
        response_model=resource.out_model,
        responses={
            200: {"headers": _ETAG},
            **(
                {}
                if resource.auto_key
                else {201: {"description": f"A new {singular}, made under the key given."}}
            ),
            **not_there,
            **PRECONDITION_FAILED,
        },
        summary=f"Replace a {singular}" + ("" if resource.auto_key else " (or create it)"),
    )

    # -- change some fields -------------------------------------------------------------------

    async def patch(request: Request, service: Any, changes: BaseModel, **path: Key) -> Response:
        return await writes.patch(policy(service), path[key], changes, _if_match(request))

    _with_signature(patch, request_p, service_p, _parameter("changes", resource.patch_model), key_p)
    router.add_api_route(
        f"/{{{key}}}",
        patch,
        methods=["PATCH"],
        name=f"patch_{singular}",
        response_model=resource.out_model,
        responses={200: {"headers": _ETAG}, **not_there, **PRECONDITION_FAILED},
        summary="Change some fields",
    )

    # -- delete ---------------------------------------------------------------------------------

    async def remove(request: Request, service: Any, **path: Key) -> Response:
        return await writes.delete(policy(service), path[key], _if_match(request))

    _with_signature(remove, request_p, service_p, key_p)
    router.add_api_route(
        f"/{{{key}}}",
        remove,
        methods=["DELETE"],
        status_code=204,
        name=f"delete_{singular}",
        responses={204: {"headers": _ETAG}, **not_there, **PRECONDITION_FAILED},
        summary=f"Delete a {singular}",
    )
    return router


def _if_match(request: Request) -> Tags | None:
    return tags(request.scope["headers"], b"if-match")
