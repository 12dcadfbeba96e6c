"""The hot path: ``GET /heroes/{id}`` and ``POST /batch`` served in front of FastAPI's routing.

A cached read is one dictionary or Redis lookup; FastAPI's routing, dependency solving and
parameter validation would cost several times that. This middleware answers the plain cases
straight from the policy with the same responses the routes build:

- ``GET /heroes/{id}`` with a valid id and no ``Cache-Control: no-cache``;
- ``POST /batch`` with a body (BodyGuard, in front, has parsed it, or answered 400/413/415).

Everything else (bad ids, bypasses, a batch without a body) goes on to the FastAPI routes,
which stay the documented definition of the endpoints.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from twotier import batch
from twotier.api.access_guard import authorize_scope
from twotier.api.body_guard import PARSED_BODY
from twotier.api.cache_control import wants_cache
from twotier.api.errors import store_unavailable_response
from twotier.api.observe import ROUTE_KEY
from twotier.api.responses import batch_response, hero_response
from twotier.heroes import UINT_MAX
from twotier.policy import CachePolicy
from twotier.store.base import StoreUnavailable

_PREFIX = "/heroes/"
_HERO_ROUTE = "/heroes/{hero_id}"


class HotReads:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/batch":
            scope[ROUTE_KEY] = "/batch"
            await self._batch(scope, receive, send)
            return
        hero_id = _plain_read(scope)
        if hero_id is None:
            await self.app(scope, receive, send)
            return
        scope[ROUTE_KEY] = _HERO_ROUTE
        policy: CachePolicy = scope["app"].state.policy
        try:
            served = await policy.read(hero_id)
        except StoreUnavailable as error:
            await store_unavailable_response(error)(scope, receive, send)
            return
        await hero_response(served, hero_id)(scope, receive, send)

    async def _batch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if PARSED_BODY not in scope:  # no body: the route says what is missing
            await self.app(scope, receive, send)
            return
        event = scope[PARSED_BODY]
        app = scope["app"]
        status, body, outcome = await batch.serve(
            app.state.policy,
            event,
            app.state.settings.batch_max_items,
            lambda role: authorize_scope(scope, role),
        )
        await batch_response(status, body, outcome)(scope, receive, send)


def _plain_read(scope: Scope) -> int | None:
    """The id of a GET /heroes/{id} this path may answer, else None."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return None
    path: str = scope["path"]
    if not path.startswith(_PREFIX):
        return None
    tail = path[len(_PREFIX) :]
    if not (tail.isascii() and tail.isdigit()) or len(tail) > 10:
        return None
    hero_id = int(tail)
    if not 0 < hero_id <= UINT_MAX:
        return None
    return hero_id if wants_cache(scope["headers"]) else None
