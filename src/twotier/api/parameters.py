"""Query parameters: every one a route does not take is a 422, never silently ignored.

FastAPI reads the parameters a route declares and drops the rest, and keeps the last of a
repeated one: ``?colour=blue`` would answer every row, ``?xp=1&xp=2`` the rows with xp 2.
This dependency, on every route, refuses both, naming each parameter and what the route
takes instead; a route may say more about a parameter it refuses (``explain``: a field no
index serves).
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
