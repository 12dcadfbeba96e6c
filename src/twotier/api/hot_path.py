"""The hot path: reads and writes of one row, and ``POST /batch``, served in front of
FastAPI's routing.

A cached read is one dictionary or Redis lookup; FastAPI's routing, dependency solving and
parameter validation would cost several times that (and a third of a write). This
middleware answers the plain cases straight from the service with the same responses the
routes build (``api.writes``: the same code):

- ``GET /{resource}/{key}`` with a valid key and no ``Cache-Control: no-cache`` (keyless
  ones come through the front door, ``api.front_door``, in front of every middleware);
- ``POST /{resource}``, ``PUT``/``PATCH``/``DELETE /{resource}/{key}`` with a body that
  validates (past the access and body guards);
- ``POST /batch`` with a body (BodyGuard, in front, has parsed it, or answered 400/413/415).

Everything else (bad keys, bypasses, invalid bodies, a batch without a body) goes on to the
FastAPI routes,
which stay the documented definition of the endpoints; ``tests/api/test_hot_path_parity.py``
sends the same requests both ways and compares the answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from twotier import batch
from twotier.access.keys import Role
from twotier.access.rules import Denied
from twotier.api import writes
from twotier.api.access_guard import authorize_scope
from twotier.api.body_guard import PARSED_BODY
from twotier.api.cache_control import wants_cache
from twotier.api.conditional import tags
from twotier.api.dependencies import bypassing
from twotier.api.errors import problem
from twotier.api.observe import ROUTE_KEY
from twotier.api.paths import app_path
from twotier.api.responses import JSON, batch_response, read_response
from twotier.policy import Outcome, ResourcePolicy, Served
from twotier.problems import DOMAIN_ERRORS, problem_of
from twotier.resources import Key, Resource
from twotier.service import Service
from twotier.store.base import StoreUnavailable


class HotPath:
    def __init__(self, app: ASGIApp, *, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.enabled:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "POST":
            if app_path(scope) == "/batch" and not scope.get("query_string"):
                scope[ROUTE_KEY] = "/batch"
                await self._batch(scope, receive, send)
                return
        elif method == "GET":
            found = scope.get(READ_KEY) or plain_read(scope)
            if found is not None:
                await answer_read(scope, receive, send, *found)
                return
        if method in _WRITES and await _write(scope, receive, send):
            return
        await self.app(scope, receive, send)

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
            lambda: bypassing(scope),
        )
        await batch_response(status, body, outcome)(scope, receive, send)


#: A batch event that says it writes, as its raw JSON has it.
_DECLARES_A_WRITE = re.compile(rb'"REQUEST"\s*:\s*"write"')


def screen_batch(scope: Scope, body: bytes) -> ASGIApp | None:
    """A batch whose body says it writes, from a caller who may not write, is answered at
    once, before its body is parsed (BodyGuard's screen), as ``batch.serve`` would answer
    it. Only refuses: a body that does not say so plainly is parsed, and the parsed event
    is judged as before."""
    if scope["method"] != "POST" or app_path(scope) != "/batch":
        return None
    if _DECLARES_A_WRITE.search(body) is None:
        return None
    try:
        authorize_scope(scope, Role.WRITE)
    except Denied as error:
        told = problem_of(error)
        return batch_response(told.status, batch.error_body(told.status, told.detail), None)
    return None


#: Where the front door puts the read it took (target, key), so it is parsed once.
READ_KEY = "twotier.read"
#: "/heroes/" → where its reads go, per app, once its service exists.
_TARGETS = "twotier.read_targets"


def _targets_of(scope: Scope) -> dict[str, _Target] | None:
    state = scope["app"].state
    targets: dict[str, _Target] | None = getattr(state, _TARGETS, None)
    if targets is None:
        service = getattr(state, "service", None)
        if service is None:  # not serving yet
            return None
        targets = _targets(service)
        setattr(state, _TARGETS, targets)
    return targets


def read_target(scope: Scope) -> tuple[_Target, Key] | None:
    """Where a ``GET /{resource}/{key}`` goes, and its key parsed; None for another path,
    a resource that does not exist, a key that does not parse, a query string (the routes
    answer those: a read by key takes no parameter)."""
    if scope.get("query_string"):
        return None
    path = app_path(scope)
    cut = path.find("/", 1)
    if cut < 0:
        return None
    targets = _targets_of(scope)
    if targets is None:
        return None
    target = targets.get(path[: cut + 1])
    if target is None:
        return None
    key = target.resource.parse_key(path[cut + 1 :])
    if key is None:
        return None
    return target, key


def plain_read(scope: Scope) -> tuple[_Target, Key] | None:
    """Where a GET /{resource}/{key} the hot path may answer goes, and its key; else None
    (no such resource, a key that does not parse, a bypass: the routes answer those)."""
    found = read_target(scope)
    if found is None:
        return None
    # One pass over the headers in the common case: neither of the two that matter.
    special = False
    for name, _ in scope["headers"]:
        if name == b"cache-control" or name == b"if-none-match":
            special = True
            break
    if special and not wants_cache(scope["headers"]):
        return None
    target, key = found
    return (target if not special else target.with_conditions()), key


def found_headers(served: Served) -> list[tuple[bytes, bytes]]:
    """A 200's headers for a row found (its body, how it was served, its version)."""
    assert served.body is not None
    headers = [_OUTCOMES[served.outcome], (b"content-length", b"%d" % len(served.body)), _JSON]
    if served.version:
        headers.append((b"etag", b'"%d"' % served.version))
    return headers


async def answer_read(
    scope: Scope, receive: Receive, send: Send, target: _Target, key: Key
) -> None:
    """Answer a plain read as the route would: the row (its headers built here, at once:
    a Response object costs more than the hit it carries), a 404, a 304, a 503."""
    scope[ROUTE_KEY] = target.template
    try:
        served = await target.policy.read(key)
    except StoreUnavailable as error:
        await problem(error)(scope, receive, send)
        return
    unless = tags(scope["headers"], b"if-none-match") if target.conditional else None
    body = served.body
    if body is None or (unless is not None and unless.matches(served.version)):
        await read_response(served, target.resource, key, unless)(scope, receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": found_headers(served)})
    await send({"type": "http.response.body", "body": body})


_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def _write(scope: Scope, receive: Receive, send: Send) -> bool:
    """Answer a write of one row as its route would (``api.writes``, the same code), or
    leave it to the routes (False): a body that does not validate (the route's 422 says
    why), a key that does not parse, a path that is not a row's.

    Writes come here past the access and body guards; FastAPI's routing, dependency
    solving and body handling cost a third of a write (profiled)."""
    method, path = scope["method"], app_path(scope)
    targets = _targets_of(scope)
    if targets is None or scope.get("query_string"):  # no write takes a parameter
        return False
    cut = path.find("/", 1)
    key: Key | None = None
    if cut < 0:  # /{resource}: only POST
        target = targets.get(path + "/") if method == "POST" else None
    elif method == "POST":
        return False
    else:
        target = targets.get(path[: cut + 1])
        key = target.resource.parse_key(path[cut + 1 :]) if target is not None else None
        if key is None:
            return False
    if target is None:
        return False
    resource = target.resource
    row: BaseModel | None = None
    if method != "DELETE":
        if PARSED_BODY not in scope:
            return False
        model = {
            "POST": resource.create_model,
            "PUT": resource.replace_model,
            "PATCH": resource.patch_model,
        }[method]
        try:
            row = model.model_validate(scope[PARSED_BODY])
        except ValidationError:
            return False
    scope[ROUTE_KEY] = f"/{resource.name}" if key is None else target.template
    wanted = tags(scope["headers"], b"if-match")
    policy = target.policy
    try:
        if method == "POST" and row is not None:
            response = await writes.create(policy, row, scope.get("root_path", ""))
        elif method == "PUT" and key is not None and row is not None:
            root = scope.get("root_path", "")
            response = await writes.replace(policy, key, row, wanted, root)
        elif method == "PATCH" and key is not None and row is not None:
            response = await writes.patch(policy, key, row, wanted)
        else:
            assert key is not None
            response = await writes.delete(policy, key, wanted)
    except DOMAIN_ERRORS as error:
        response = problem(error)
    await response(scope, receive, send)
    return True


_JSON = (b"content-type", JSON.encode())
_OUTCOMES = {outcome: (b"x-cache", outcome.value.encode()) for outcome in Outcome}


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
