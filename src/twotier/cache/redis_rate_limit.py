"""Token buckets in Redis: one limit shared by every process and host using the cache."""

from __future__ import annotations

import math

from twotier.cache.redis_client import RedisClient, initialized, link_failed
from twotier.errors import CacheUnavailable

# KEYS[1]: the bucket; ARGV: rate (tokens per second), burst, expiry (ms). Returns the wait
# in ms (0: allowed). Redis' own clock, so that every process agrees on the time.
_TAKE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local rate = tonumber(ARGV[1]) / 1000
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return wait
"""


class RedisRateLimiter:
    def __init__(self, client: RedisClient, namespace: str) -> None:
        self._prefix = f"{namespace}:ratelimit:"
        self._client = client
        self._take = client.register_script(_TAKE)

    async def acquire(self, identity: str, rate: float, burst: float) -> float:
        # A bucket left alone refills completely in burst / rate seconds; then it may go.
        expiry_ms = math.ceil(burst / rate * 1000) + 1000
        try:
            await initialized(self._client)
            wait_ms = await self._take(
                keys=[self._prefix + identity], args=[rate, burst, expiry_ms]
            )
        except Exception as error:
            if not link_failed(error):
                raise
            raise CacheUnavailable(f"rate limiter unavailable: {error}") from error
        return int(wait_ms) / 1000
