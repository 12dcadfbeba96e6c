"""Rate limiting by token bucket: ``rate`` requests a second on average, bursts of ``burst``.

Buckets live in Redis when Redis is the cache (one limit across every process and host,
kept by one atomic script on Redis' clock: ``cache.redis_rate_limit``), else in the process.
Each call takes one token from the caller's bucket and answers how long to wait: 0 when
the request may go on.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol


class RateLimiter(Protocol):
    async def acquire(self, identity: str, rate: float, burst: float) -> float:
        """Take a token from ``identity``'s bucket: 0, or the seconds until one is there.
        Raises CacheUnavailable when the shared buckets cannot be reached."""


class MemoryRateLimiter:
    """Buckets in this process, the least recently used forgotten past ``max_buckets``."""

    def __init__(self, max_buckets: int = 100_000) -> None:
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def acquire(self, identity: str, rate: float, burst: float) -> float:
        now = time.monotonic()
        tokens, at = self._buckets.pop(identity, (burst, now))
        tokens = min(burst, tokens + (now - at) * rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / rate
        self._buckets[identity] = (tokens, now)
        if len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
        return wait
