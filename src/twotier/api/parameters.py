"""Query parameters: every one a route does not take is a 422, never silently ignored.

FastAPI reads the parameters a route declares and drops the rest, and keeps the last of a
repeated one: ``?colour=blue`` would answer every row, ``?xp=1&xp=2`` the rows with xp 2.
Only the lists (``GET /{resource}``) take parameters: their route's dependency
(``only_known_parameters``) refuses any other and a repeated one, naming each and what the
route takes, and may say more of one it refuses (``explain``: a field no index serves).
Every other path takes none, and ``QueryGuard`` refuses a query string there before any
route runs (which costs a request without one a dictionary lookup, where a dependency on
every route cost /healthz a sixth of its time).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl
from weakref import WeakKeyDictionary

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from twotier.api.paths import app_path
from twotier.api.responses import send_error

#: What a route's endpoint says of parameters it does not take (name: why).
_EXPLAINED: WeakKeyDictionary[Callable[..., Any], Mapping[str, str]] = WeakKeyDictionary()
#: Each route's parameters (by its endpoint), read once from its dependencies.
_TAKEN: WeakKeyDictionary[Callable[..., Any], frozenset[str]] = WeakKeyDictionary()


def explain(endpoint: Callable[..., Any], reasons: Mapping[str, str]) -> None:
    """Say why ``endpoint`` refuses these parameters (instead of "not a parameter")."""
    _EXPLAINED[endpoint] = reasons


def _taken(route: APIRoute) -> frozenset[str]:
    names = _TAKEN.get(route.endpoint)
    if names is None:
        names = _TAKEN[route.endpoint] = frozenset(_query_names(route.dependant))
    return names


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route reads, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def only_known_parameters(request: Request) -> None:
    """422 for a query parameter the route does not take, or one given more than once."""
    query = request.scope.get("query_string", b"")
    if not query:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    taken = _taken(route)
    explained = _EXPLAINED.get(route.endpoint, {})
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name in seen:
            if name in taken:
                errors.append(_error(name, "given more than once; give it once", "repeated"))
            continue
        seen.add(name)
        if name not in taken:
            takes = ", ".join(sorted(taken)) if taken else "no query parameters"
            why = explained.get(name) or f"not a parameter of this path (it takes: {takes})"
            errors.append(_error(name, why, "unknown_parameter"))
    if errors:
        raise RequestValidationError(errors)


def _error(name: str, message: str, kind: str) -> dict[str, Any]:
    return {"loc": ("query", name), "msg": message, "type": kind}


#: Paths of FastAPI's own (the docs; Swagger UI's OAuth2 redirect takes its provider's
#: parameters): not twotier's to judge.
_OWN_PATHS = ("/docs", "/redoc", "/openapi.json", "/static-offline-docs/")


class QueryGuard:
    """A query string on a path that takes none (anything but a list): 422, naming each
    parameter; the lists' own route judges theirs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string") if scope["type"] == "http" else None
        if query and not _takes_parameters(scope):
            # Separators alone ("?&") name no parameter: nothing to refuse.
            names = dict.fromkeys(
                name for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            )
            if names:
                errors = [
                    _error(
                        name,
                        "not a parameter of this path (it takes no query parameters)",
                        "unknown_parameter",
                    )
                    for name in names
                ]
                await send_error(send, 422, errors)
                return
        await self.app(scope, receive, send)


def _takes_parameters(scope: Scope) -> bool:
    """A list (``GET /{resource}``, its route judges its parameters) or a path of FastAPI's."""
    path = app_path(scope)
    if path.startswith(_OWN_PATHS):
        return True
    if scope["method"] not in ("GET", "HEAD") or path.count("/") != 1:
        return False
    service = getattr(scope["app"].state, "service", None)
    return service is not None and path[1:] in service.resources
