"""The hot path: ``GET /{resource}/{key}`` and ``POST /batch`` served in front of FastAPI's
routing.

A cached read is one dictionary or Redis lookup; FastAPI's routing, dependency solving and
parameter validation would cost several times that. This middleware answers the plain cases
straight from the service with the same responses the routes build:

- ``GET /{resource}/{key}`` with a valid key and no ``Cache-Control: no-cache``;
- ``POST /batch`` with a body (BodyGuard, in front, has parsed it, or answered 400/413/415).

Everything else (bad keys, bypasses, a batch without a body) goes on to the FastAPI routes,
which stay the documented definition of the endpoints; ``tests/api/test_hot_path_parity.py``
sends the same requests both ways and compares the answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from twotier import batch
from twotier.api.access_guard import authorize_scope
from twotier.api.body_guard import PARSED_BODY
from twotier.api.cache_control import wants_cache
from twotier.api.conditional import tags
from twotier.api.errors import problem
from twotier.api.observe import ROUTE_KEY
from twotier.api.paths import app_path
from twotier.api.responses import batch_response, read_response
from twotier.policy import ResourcePolicy
from twotier.resources import Key, Resource
from twotier.service import Service
from twotier.store.base import StoreUnavailable


class HotReads:
    def __init__(self, app: ASGIApp, *, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled
        # "/heroes/" → where its reads go, once the service exists.
        self._targets: dict[str, _Target] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.enabled:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "POST":
            if app_path(scope) == "/batch":
                scope[ROUTE_KEY] = "/batch"
                await self._batch(scope, receive, send)
                return
        elif method == "GET":
            found = self._plain_read(scope)
            if found is not None:
                target, key = found
                scope[ROUTE_KEY] = target.template
                try:
                    served = await target.policy.read(key)
                except StoreUnavailable as error:
                    await problem(error)(scope, receive, send)
                    return
                unless = tags(scope["headers"], b"if-none-match") if target.conditional else None
                response = read_response(served, target.resource, key, unless)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _plain_read(self, scope: Scope) -> tuple[_Target, Key] | None:
        """Where a GET /{resource}/{key} this path may answer goes, and its key; else None."""
        path = app_path(scope)
        cut = path.find("/", 1)
        if cut < 0:
            return None
        targets = self._targets
        if targets is None:
            targets = self._targets = _targets(scope["app"].state.service)
        target = targets.get(path[: cut + 1])
        if target is None:
            return None
        key = target.resource.parse_key(path[cut + 1 :])
        if key is None:
            return None
        # One pass over the headers in the common case: neither of the two that matter.
        special = False
        for name, _ in scope["headers"]:
            if name == b"cache-control" or name == b"if-none-match":
                special = True
                break
        if special and not wants_cache(scope["headers"]):
            return None
        return (target if not special else target.with_conditions()), key

    async def _batch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if PARSED_BODY not in scope:  # no body: the route says what is missing
            await self.app(scope, receive, send)
            return
        app = scope["app"]
        status, body, outcome = await batch.serve(
            app.state.service,
            scope[PARSED_BODY],
            app.state.settings.batch_max_items,
            lambda role: authorize_scope(scope, role),
        )
        await batch_response(status, body, outcome)(scope, receive, send)


@dataclass(frozen=True, slots=True)
class _Target:
    """A resource's reads by key: its policy, and its route template (the metrics' label)."""

    resource: Resource
    policy: ResourcePolicy
    template: str
    conditional: bool = False  # the request carries If-None-Match (or Cache-Control)

    def with_conditions(self) -> _Target:
        return _Target(self.resource, self.policy, self.template, True)


def _targets(service: Service) -> dict[str, _Target]:
    return {
        f"/{name}/": _Target(
            resource, service.resource(name), f"/{name}/{{{resource.path_parameter}}}"
        )
        for name, resource in service.resources.items()
    }
