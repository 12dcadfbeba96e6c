"""The outermost middleware: request id, access log line, request metrics, security headers.

Pure ASGI (no per-request objects beyond a small record) because it wraps the hot path too.
The route label is the template (``/heroes/{hero_id}``), never the raw path, so that the
metrics' cardinality stays bounded; requests that match no route count as ``unmatched``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twotier import logs
from twotier.api.headers import headers_of, presents_key
from twotier.telemetry import (
    CURRENT_REQUEST,
    REQUEST_STATS,
    RequestRecord,
    Tally,
    count_request,
    method_label,
)

access_log = logging.getLogger("twotier.access")
log = logging.getLogger(__name__)

#: Set by middlewares that answer before routing (the hot path), read instead of the route.
ROUTE_KEY = "twotier.route"
_UNMATCHED = "unmatched"
_UNKNOWN = object()
# A client's X-Request-Id is kept only if it is a plain token (it goes into logs and headers).
_SAFE_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")

_COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
# JSON answers load nothing; the offline docs pages load their own scripts and styles.
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
_DOCS_CSP = (
    b"content-security-policy",
    b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
    b"'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
)
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
_API_HEADERS = (*_COMMON_HEADERS, _API_CSP)
_DOCS_HEADERS = (*_COMMON_HEADERS, _DOCS_CSP)


class Observe:
    def __init__(self, app: ASGIApp, *, access_log_enabled: bool = True) -> None:
        self.app = app
        self.access_log_enabled = access_log_enabled
        # Route template → the resource it serves; templates are few, and known once served.
        self._resources: dict[str, str | None] = {}

    def _resource_of(self, route: str, scope: Scope) -> str | None:
        """The resource a route template serves (``/heroes/{hero_id}`` → heroes), if any."""
        known = self._resources.get(route, _UNKNOWN)
        if known is not _UNKNOWN:
            return known  # type: ignore[return-value]
        name = route.split("/", 2)[1] if route.startswith("/") else ""
        service = getattr(scope["app"].state, "service", None)
        if service is None:
            return None  # not serving yet: nothing to remember
        resource = self._resources[route] = name if name in service.resources else None
        return resource

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"]  # as the client sent it (HeadAsGet turns HEAD into GET)
        record = RequestRecord(request_id(scope))
        token = CURRENT_REQUEST.set(record)
        status = 500
        cache = None
        secure, keyed = _traits(scope)
        responded = False

        async def observed_send(message: Message) -> None:
            nonlocal status, cache, responded
            if message["type"] == "http.response.start":
                responded = True
                status = message["status"]
                headers = list(message.get("headers", ()))
                html = private = False
                for name, value in headers:
                    if name == b"x-cache":
                        cache = value.decode("latin-1")
                    elif name == b"content-type":
                        html = value.startswith(b"text/html")
                    elif name == b"cache-control":
                        private = True  # the route said (no-store on a new key's secret)
                if keyed and not private:
                    # An answer to a request with a key is that key's: no shared cache (a
                    # CDN in front) may keep it for others.
                    headers.append(_PRIVATE)
                decorate(headers, record.request_id.encode(), html=html, secure=secure)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except Exception as error:
            # A bug. Answered here, inside this middleware, so that the 500 carries the
            # request id and the headers like every other answer (Starlette's own handler
            # sits outside it), and logged once, with its traceback, under the request id.
            log.error("unhandled error: %s", type(error).__name__, exc_info=error)
            if responded:
                raise  # too late for an answer: the server drops the connection
            # Imported here: a Lambda's seed events log through this module, and need none
            # of Starlette's responses.
            from twotier.api.responses import send_error

            await send_error(observed_send, 500, "internal server error")
        finally:
            self._account(scope, route_of(scope), method, status, started, cache, record)
            CURRENT_REQUEST.reset(token)

    async def answer(
        self,
        scope: Scope,
        send: Send,
        held: HeldRead,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        """Send a JSON answer made in front of the app with no await (a hit held in this
        process), with what ``__call__`` adds around the app: the same headers, metrics and
        log line, without its closure and context per request (measured: they were a
        third of such a hit). Only for a request with none of the headers twotier
        reads (``api.headers``): its id is a new one, and only its scheme says https."""
        started = time.perf_counter()
        request_id = _new_request_id()
        decorate(headers, request_id, html=False, secure=scope.get("scheme") == "https")
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except BaseException:
            record = RequestRecord(request_id.decode())
            self._account(scope, held.route, "GET", 500, started, "HIT", record)
            raise
        elapsed = time.perf_counter() - started
        held.tally.add(elapsed)
        if self._logs():
            record = RequestRecord(request_id.decode())
            self._log(scope, held.route, "GET", 200, elapsed, "HIT", record)

    def _logs(self) -> bool:
        """Whether there is an access log line to write (off, or below the level: no
        fields to gather either)."""
        return self.access_log_enabled and access_log.isEnabledFor(logging.INFO)

    def _account(
        self,
        scope: Scope,
        route: str,
        method: str,
        status: int,
        started: float,
        cache: str | None,
        record: RequestRecord,
    ) -> None:
        """Count a request that is done, and write its access log line."""
        elapsed = time.perf_counter() - started
        count_request(route, method, status, elapsed)
        if self._logs():
            self._log(scope, route, method, status, elapsed, cache, record)

    def _log(
        self,
        scope: Scope,
        route: str,
        method: str,
        status: int,
        elapsed: float,
        cache: str | None,
        record: RequestRecord,
    ) -> None:
        client = scope.get("client")
        if record.resource is None:
            record.resource = self._resource_of(route, scope)
        log_request(
            record,
            method=method_label(method),
            route=route,
            status=status,
            seconds=elapsed,
            cache=cache,
            path=scope["path"],
            client=client[0] if client else None,
        )


@dataclass(frozen=True, slots=True)
class HeldRead:
    """What the answer to a read held in this process is counted under: its route template,
    and that route's tally of 200s (bound once)."""

    route: str
    tally: Tally

    @classmethod
    def of(cls, route: str) -> HeldRead:
        return cls(route, REQUEST_STATS.tally(route, "GET", 200))


def decorate(
    headers: list[tuple[bytes, bytes]], request_id: bytes, *, html: bool, secure: bool
) -> None:
    """Add to an answer's headers what every answer carries: its request id and the
    security headers (a CSP for JSON, or the docs pages' own; HSTS over https)."""
    headers.append((b"x-request-id", request_id))
    headers.extend(_DOCS_HEADERS if html else _API_HEADERS)
    if secure:
        headers.append(_HSTS)


def request_id(scope: Scope) -> str:
    """API Gateway's request id in Lambda, else the client's X-Request-Id, else a new one."""
    event = scope.get("aws.event")
    if isinstance(event, dict):
        gateway_id = event.get("requestContext", {}).get("requestId")
        if isinstance(gateway_id, str) and _SAFE_ID.fullmatch(gateway_id):
            return str(gateway_id)
    for value in headers_of(scope).get(b"x-request-id", ())[:1]:
        candidate = value.decode("latin-1")
        if _SAFE_ID.fullmatch(candidate):
            return candidate
    return _new_request_id().decode()


# Generated ids: a random per-process prefix and a counter. Unique across processes and
# restarts like a uuid4, without a system call for randomness on every request.
_ids = itertools.count(1)
_ID_PREFIX = uuid.uuid4().hex[:16].encode()


def _new_request_id() -> bytes:
    return b"%s%016x" % (_ID_PREFIX, next(_ids))


def route_of(scope: Scope) -> str:
    """The template of the route a request took: the hot path's, FastAPI's, or that of a
    plain Starlette route or mount (the OpenAPI document, the docs' files)."""
    explicit = scope.get(ROUTE_KEY)
    if explicit is not None:
        return str(explicit)
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    endpoint = scope.get("endpoint")
    return _UNMATCHED if endpoint is None else _template_of(scope, endpoint)


#: The templates of plain routes and mounts, by their endpoint (found once per app).
_TEMPLATES: WeakKeyDictionary[Any, str] = WeakKeyDictionary()


def _template_of(scope: Scope, endpoint: Any) -> str:
    try:
        return _TEMPLATES[endpoint]
    except (KeyError, TypeError):
        pass
    for route in getattr(scope.get("app"), "routes", ()):
        if getattr(route, "endpoint", None) is endpoint or getattr(route, "app", None) is endpoint:
            template = str(getattr(route, "path_format", None) or route.path)
            with contextlib.suppress(TypeError):  # an endpoint that takes no weak reference
                _TEMPLATES[endpoint] = template
            return template
    return _UNMATCHED


_PRIVATE = (b"cache-control", b"private")


def _traits(scope: Scope) -> tuple[bool, bool]:
    """Whether the request came over https (itself, or behind a load balancer that ends
    TLS: the ALB, API Gateway), and whether it presents a key."""
    headers = headers_of(scope)
    secure = scope.get("scheme") == "https" or b"https" in headers.get(b"x-forwarded-proto", ())
    return secure, presents_key(headers)


def log_request(
    record: RequestRecord,
    *,
    method: str,
    route: str,
    status: int,
    seconds: float,
    cache: str | None,
    **more: Any,
) -> None:
    """The access log line of one request (or one direct Lambda invocation), its fields
    gathered when the line is written (``logs.log_fields_later``)."""
    line = (record, method, route, status, seconds, cache, more)
    logs.log_fields_later(access_log, "request", _request_fields, line)


def _request_fields(
    line: tuple[RequestRecord, str, str, int, float, str | None, dict[str, Any]],
) -> dict[str, Any]:
    record, method, route, status, seconds, cache, more = line
    fields: dict[str, Any] = {
        "request_id": record.request_id,
        "method": method,
        "route": route,
        **more,
        "status": status,
        "latency_ms": _milliseconds(seconds),
        "cache": cache,
        "db_ms": _milliseconds(record.database_seconds),
        "db_queries": record.database_queries,
    }
    if record.resource is not None:
        fields["resource"] = record.resource
    if record.key_id is not None:
        fields["key"] = record.key_id
    return fields


def _milliseconds(seconds: float) -> float:
    """Seconds as milliseconds to the microsecond (cheaper than ``round(ms, 3)``)."""
    return round(seconds * 1_000_000) / 1000
