"""Who may do what, and how often: API keys, roles and rate limits, before any body is read.

A key comes in ``X-API-Key`` (API Gateway's convention) or ``Authorization: Bearer``. The
role a request needs follows from its method and path: reads need ``read`` when
``TWOTIER_REQUIRE_KEY_FOR_READS`` is on, writes need ``write`` unless
``TWOTIER_REQUIRE_KEY_FOR_WRITES`` is off, ``/admin`` needs ``admin``. ``POST /batch`` is a
read or a write by its body, so the batch code asks ``authorize`` once it knows which.

Requests with a valid key draw on the key's token bucket, all others on their address's,
so that guessing keys is rate limited too. When the shared buckets (Redis) cannot be
reached, requests go on: a cache fault must not take the API down.
"""

from __future__ import annotations

import ipaddress
import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from twotier.access.keyring import Principal
from twotier.access.keys import Role
from twotier.access.rules import Access, authorize, retry_after
from twotier.api.headers import forwarded_for, headers_of, presented_key
from twotier.api.paths import app_path
from twotier.api.responses import CHALLENGE, send_error
from twotier.errors import Denied, InvalidKey, StoreUnavailable
from twotier.problems import RETRY_AFTER_SECONDS
from twotier.telemetry import CURRENT_REQUEST, RATE_LIMITED, REJECTED

log = logging.getLogger(__name__)

PRINCIPAL_KEY = "twotier.principal"
_PROBES = frozenset({"/healthz", "/readyz"})  # load balancers' checks: never limited
_CHALLENGE = [(b"www-authenticate", CHALLENGE.encode())]


def authorize_scope(scope: Scope, needed: Role) -> None:
    """For the batch code: may this request's caller do what needs ``needed``?"""
    access: Access = scope["app"].state.access
    if access.rules.needs(needed):
        authorize(scope.get(PRINCIPAL_KEY), needed)


class AccessGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        access: Access = scope["app"].state.access
        rules = access.rules
        token = presented_key(headers_of(scope))
        principal: Principal | None = None
        invalid: InvalidKey | None = None
        if token is not None:
            try:
                principal = await access.keyring.authenticate(token)
            except InvalidKey as error:
                invalid = error
            except StoreUnavailable as error:
                log.warning("cannot check API keys: %s", error)
                await send_error(
                    send, 503, "API keys cannot be checked right now", _retry(RETRY_AFTER_SECONDS)
                )
                return
        if principal is not None:
            record = CURRENT_REQUEST.get()
            if record is not None:
                record.key_id = principal.key_id
        limited = rules.per_key if principal is not None else rules.per_address
        if (
            limited > 0
            and app_path(scope) not in _PROBES
            and not await self._within_limits(access, principal, scope, send)
        ):
            return
        if invalid is not None:
            REJECTED.labels("401").inc()
            await send_error(send, 401, f"invalid API key: {invalid}", _CHALLENGE)
            return
        try:
            authorize(principal, rules.role_for(scope["method"], app_path(scope)))
        except Denied as denied:
            REJECTED.labels(str(denied.status)).inc()
            headers = _CHALLENGE if denied.status == 401 else []
            await send_error(send, denied.status, denied.detail, headers)
            return
        scope[PRINCIPAL_KEY] = principal
        await self.app(scope, receive, send)

    async def _within_limits(
        self, access: Access, principal: Principal | None, scope: Scope, send: Send
    ) -> bool:
        rules = access.rules
        if principal is not None:
            identity, rate = f"key:{principal.key_id}", rules.per_key
        else:
            identity, rate = (
                f"addr:{address_bucket(client_address(scope, rules.forwarded_hops))}",
                rules.per_address,
            )
        if rate <= 0:
            return True
        wait = await access.wait(identity, rate)
        if wait <= 0:
            return True
        RATE_LIMITED.labels(identity.partition(":")[0]).inc()
        await send_error(
            send,
            429,
            f"rate limit exceeded ({rate:g} requests a second); retry after {wait:.2f} s",
            _retry(retry_after(wait)),
        )
        return False


def _retry(seconds: str) -> list[tuple[bytes, bytes]]:
    return [(b"retry-after", seconds.encode())]


def address_bucket(address: str) -> str:
    """The rate limit's bucket of a client address: an IPv4 address its own, an IPv6 one
    its /64 (a host is handed a /64 at least, and would otherwise have 2⁶⁴ buckets)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an address ("unknown"): a bucket of its own
    if parsed.version == 6:
        if parsed.ipv4_mapped is not None:  # ::ffff:a.b.c.d is that IPv4 client
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def client_address(scope: Scope, forwarded_hops: int) -> str:
    """The caller's address: the socket's peer, or with ``forwarded_hops`` trusted proxies
    in front, the entry they added to X-Forwarded-For (the rightmost ones are theirs).

    Every X-Forwarded-For line is read, in order, as one list (RFC 9110 §5.3): a client
    that sends a line of its own beside the proxy's cannot choose which one is counted."""
    if forwarded_hops > 0:
        entries = forwarded_for(headers_of(scope))
        if len(entries) >= forwarded_hops:
            return str(entries[-forwarded_hops])
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
