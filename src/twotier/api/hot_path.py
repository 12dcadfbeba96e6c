"""The hot path: ``GET /heroes/{id}`` served in front of FastAPI's routing.

A cached read is one dictionary or Redis lookup; FastAPI's routing, dependency solving and
parameter validation would cost several times that. This middleware answers the plain case
(a valid id, no ``Cache-Control: no-cache``) straight from the policy with the same response
the route builds; everything else (bad ids, bypasses) goes on to the FastAPI route, which
stays the documented definition of the endpoint.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from twotier.api.errors import store_unavailable_response
from twotier.api.responses import hero_response
from twotier.heroes import UINT_MAX
from twotier.policy import CachePolicy
from twotier.store.base import StoreUnavailable

_PREFIX = "/heroes/"


class HotReads:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hero_id = _plain_read(scope)
        if hero_id is None:
            await self.app(scope, receive, send)
            return
        policy: CachePolicy = scope["app"].state.policy
        try:
            served = await policy.read(hero_id)
        except StoreUnavailable as error:
            await store_unavailable_response(error)(scope, receive, send)
            return
        await hero_response(served, hero_id)(scope, receive, send)


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
    for name, value in scope["headers"]:
        if name == b"cache-control" and (b"no-cache" in value or b"no-store" in value):
            return None
    return hero_id
