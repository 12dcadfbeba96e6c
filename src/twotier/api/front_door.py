"""The front door: plain reads by key answered in front of every middleware but Observe.

A cached read costs the server a few microseconds; each ASGI middleware it passes through
costs one or two (profiled with py-spy: FastAPI's own error, telemetry and body-limit
wrappers, HEAD, access and body guards came to a third of a cached read, and a tenth of a
miss). When a request has nothing for them to do, it goes straight to the hot path, still
inside Observe (request id, metrics, access log, security headers):

- ``GET /{resource}/{key}`` that the hot path answers (``hot_path.plain_read``);
- no API key presented, reads open to anyone, no rate limits (the access guard would have
  nothing to decide);
- no ``Origin`` while CORS is configured (the CORS middleware would add its headers).

Everything else takes the whole stack, as before. ``tests/api/test_hot_path_parity.py``
sends the same requests through the front door and through the routes and compares.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from twotier.access.rules import Access
from twotier.api.access_guard import presented_key
from twotier.api.hot_path import READ_KEY, HotPath, found_headers, plain_read, read_target
from twotier.api.observe import OBSERVED_HEADERS, ROUTE_KEY, Observe


class FrontDoor:
    """In front of the app's whole middleware stack (``stack``)."""

    def __init__(self, stack: ASGIApp, *, access_log: bool) -> None:
        self.stack = stack
        # Observe around the hot path alone; the hot path answers every read let in.
        self.door = Observe(HotPath(_unreachable), access_log_enabled=access_log)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            plain = _plain_headers(scope)
            found = _open_read(scope) if plain else _plain_open_read(scope)
            if found is not None:
                target, key = found
                served = target.policy.held(key) if plain else None
                if served is not None and served.body is not None:
                    # The row is held here: answered now, no coroutine per step.
                    scope[ROUTE_KEY] = target.template
                    await self.door.answer(scope, send, found_headers(served), served.body)
                    return
                scope[READ_KEY] = found
                await self.door(scope, receive, send)
                return
        await self.stack(scope, receive, send)


def open_front_door(app: FastAPI, *, access_log: bool) -> None:
    """Put the front door in front of ``app``'s middleware stack, when it is built."""
    build = app.build_middleware_stack

    def build_with_front_door() -> ASGIApp:
        return FrontDoor(build(), access_log=access_log)

    app.build_middleware_stack = build_with_front_door  # type: ignore[method-assign]


#: Request headers that something in the stack reads (CORS, the access guard, caching and
#: conditional requests, Observe): a request with none of them, the common read, is
#: judged by one pass over its headers.
_READ_HEADERS = OBSERVED_HEADERS | {
    b"origin",
    b"x-api-key",
    b"authorization",
    b"cache-control",
    b"if-none-match",
}


def _plain_headers(scope: Scope) -> bool:
    """None of the headers in ``_READ_HEADERS``."""
    # A loop, not all() over a generator: that costs a generator's frame on every read.
    for name, _ in scope["headers"]:  # noqa: SIM110
        if name in _READ_HEADERS:
            return False
    return True


def _open(scope: Scope) -> bool:
    """Reads are open to anyone, with no rate limit: the access guard has nothing to judge
    in a request that presents no key."""
    access: Access | None = getattr(scope["app"].state, "access", None)
    if access is None:
        return False
    rules = access.rules
    return not (rules.per_address > 0 or rules.per_key > 0 or rules.reads_need_key)


def _open_read(scope: Scope) -> Any:
    """The (target, key) of a read with plain headers the front door may take, else None."""
    return read_target(scope) if _open(scope) else None


def _plain_open_read(scope: Scope) -> Any:
    """The (target, key) of a read the front door may take, else None."""
    for name, _ in scope["headers"]:
        if name == b"origin":
            return None
    if presented_key(scope) is not None:
        return None
    return plain_read(scope) if _open(scope) else None


async def _unreachable(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("the front door let in a request the hot path does not answer")
