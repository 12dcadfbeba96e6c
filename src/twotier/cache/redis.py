"""The Redis cache (standalone Redis, ElastiCache, ``rediss://`` for TLS).

A value is stored as ``b"<version>|<body>"`` so that the conditional writes can compare
versions inside Redis, in one Lua script, atomically.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from twotier.cache.base import CacheUnavailable, Entry

# KEYS[1] entry; ARGV[1] version, ARGV[2] encoded value, ARGV[3] ttl in ms.
_PUT_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local sep = string.find(current, '|', 1, true)
  if sep and tonumber(string.sub(current, 1, sep - 1)) >= tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# KEYS[1] generation key; ARGV[1] candidate, ARGV[2] ttl in ms. Generations are compared
# as strings: they are random 62-bit numbers, beyond what a Lua double holds exactly.
_GENERATION = """
local generation = redis.call('GET', KEYS[1])
if not generation then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  generation = ARGV[1]
end
return generation
"""

# KEYS[1] entry, KEYS[2] generation key; ARGV[1] generation, ARGV[2] value, ARGV[3] ttl.
_PUT_IF_GENERATION = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


def _encode(entry: Entry) -> bytes:
    return b"%d|%b" % (entry.version, entry.body)


def _decode(raw: bytes | str | None) -> Entry | None:
    if raw is None:
        return None
    assert isinstance(raw, bytes)  # the client is built with decode_responses=False
    version, _, body = raw.partition(b"|")
    return Entry(int(version), body)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisCache:
    def __init__(self, url: str, *, namespace: str = "twotier", timeout: float = 0.5) -> None:
        self._prefix = f"{namespace}:"
        self._redis = aioredis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=False,
            max_connections=256,
        )
        self._put_if_newer = self._redis.register_script(_PUT_IF_NEWER)
        self._generation = self._redis.register_script(_GENERATION)
        self._put_if_generation = self._redis.register_script(_PUT_IF_GENERATION)

    def _key(self, key: str) -> str:
        return self._prefix + key

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        try:
            yield
        except (RedisError, OSError, TimeoutError) as error:
            raise CacheUnavailable(f"cache unavailable: {type(error).__name__}: {error}") from error

    async def get(self, key: str) -> Entry | None:
        async with self._guard():
            return _decode(await self._redis.get(self._key(key)))

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        if not keys:
            return []
        async with self._guard():
            raws = await self._redis.mget([self._key(key) for key in keys])
        return [_decode(raw) for raw in raws]

    async def put_if_newer(self, key: str, entry: Entry, ttl: float) -> bool:
        async with self._guard():
            stored = await self._put_if_newer(
                keys=[self._key(key)], args=[entry.version, _encode(entry), _ms(ttl)]
            )
        return bool(stored)

    async def get_with_generation(
        self, key: str, generation_key: str, candidate: int, ttl: float
    ) -> tuple[Entry | None, int]:
        async with self._guard():
            raw, generation = await self._redis.mget([self._key(key), self._key(generation_key)])
            if generation is None:
                generation = await self._generation(
                    keys=[self._key(generation_key)], args=[candidate, _ms(ttl)]
                )
        return _decode(raw), int(generation)

    async def put_if_generation(
        self, key: str, generation_key: str, entry: Entry, ttl: float
    ) -> bool:
        async with self._guard():
            stored = await self._put_if_generation(
                keys=[self._key(key), self._key(generation_key)],
                args=[entry.version, _encode(entry), _ms(ttl)],
            )
        return bool(stored)

    async def set_generations(self, generations: Mapping[str, int], ttl: float) -> None:
        if not generations:
            return
        async with self._guard(), self._redis.pipeline(transaction=False) as pipe:
            for key, value in generations.items():
                pipe.set(self._key(key), value, px=_ms(ttl))
            await pipe.execute()

    async def delete(self, keys: Sequence[str]) -> None:
        if keys:
            async with self._guard():
                await self._redis.delete(*[self._key(key) for key in keys])

    async def clear(self) -> None:
        async with self._guard():
            batch: list[bytes] = []
            async for key in self._redis.scan_iter(match=self._prefix + "*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await self._redis.unlink(*batch)
                    batch.clear()
            if batch:
                await self._redis.unlink(*batch)

    async def ping(self) -> None:
        async with self._guard():
            await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
