"""Which role a request needs, and whether a caller has it."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from twotier.access.keyring import KeyRing, Principal
from twotier.access.keys import Role
from twotier.access.rate_limit import RateLimiter
from twotier.errors import CacheUnavailable, Denied

log = logging.getLogger(__name__)

_OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/redoc"})
_OPEN_PREFIXES = ("/docs/", "/static-offline-docs/")


def retry_after(wait: float) -> str:
    """A Retry-After header's value for a wait of ``wait`` seconds: whole seconds, one at
    least."""
    return str(max(1, math.ceil(wait)))


@dataclass(frozen=True, slots=True)
class AccessRules:
    """The access settings, as the guard applies them."""

    reads_need_key: bool = False
    writes_need_key: bool = True
    per_key: float = 0.0  # requests a second; 0: no limit
    per_address: float = 0.0
    burst_seconds: float = 2.0  # a full bucket holds this many seconds' worth
    forwarded_hops: int = 0  # proxies in front whose X-Forwarded-For entries to trust
    anonymous_bypass: float = 20.0  # reads a second without a key that skip the cache

    def role_for(self, method: str, path: str) -> Role | None:
        """The role a request needs (None: anyone may), judged before its body is read."""
        if path in _OPEN_PATHS or path.startswith(_OPEN_PREFIXES) or method == "OPTIONS":
            return None
        if path == "/admin" or path.startswith("/admin/"):
            return Role.ADMIN
        if method in ("GET", "HEAD") or (method == "POST" and path == "/batch"):
            # A batch is a read or a write by its body: the batch code decides.
            return Role.READ if self.reads_need_key else None
        return Role.WRITE if self.writes_need_key else None

    def needs(self, role: Role) -> bool:
        if role is Role.READ:
            return self.reads_need_key
        if role is Role.WRITE:
            return self.writes_need_key
        return True


def authorize(principal: Principal | None, needed: Role | None) -> None:
    """Raise Denied unless ``principal`` may do what needs ``needed``."""
    if needed is None:
        return
    if principal is None:
        raise Denied(401, f"this request needs an API key with role '{needed}' (header X-API-Key)")
    if not principal.role.allows(needed):
        raise Denied(
            403, f"API key {principal.key_id} has role '{principal.role}'; this needs '{needed}'"
        )


@dataclass(slots=True)
class Access:
    """What the guard consults: the rules, the keys, the buckets."""

    rules: AccessRules
    keyring: KeyRing
    limiter: RateLimiter

    async def wait(self, bucket: str, rate: float) -> float:
        """Seconds until ``bucket`` (``rate`` tokens a second, bursts of ``burst_seconds``'
        worth) has a token for this request; 0: it had one, now taken. 0 as well when the
        shared buckets cannot be reached: a cache fault must not take the API down."""
        burst = max(1.0, rate * self.rules.burst_seconds)
        try:
            return await self.limiter.acquire(bucket, rate, burst)
        except CacheUnavailable as error:
            log.warning("rate limits not applied: %s", error)
            return 0.0

    async def may_bypass(self, principal: Principal | None) -> None:
        """A read that skips the cache: Denied (429) past the budget of such reads without a
        key (anyone can ask for them, and each is a database query); with a key, always."""
        rate = self.rules.anonymous_bypass
        if principal is not None:
            return
        if rate <= 0:
            raise Denied(
                429,
                "reads without an API key are served from the cache: drop Cache-Control "
                "no-cache, or send a key",
            )
        wait = await self.wait("bypass:anonymous", rate)
        if wait > 0:
            raise Denied(
                429,
                f"too many reads without an API key skip the cache ({rate:g} a second): drop "
                f"Cache-Control no-cache, or send a key; retry after {wait:.2f} s",
                retry_after=wait,
            )
