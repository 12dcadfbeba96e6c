"""The Redis cache (standalone Redis, ElastiCache, ``rediss://`` for TLS).

A value is stored as ``b"<version>|<body>"`` so that the conditional writes can compare
versions inside Redis, in one Lua script, atomically.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from twotier.batching import TickBatcher
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

# KEYS: generation keys; ARGV[i] the candidate of KEYS[i], ARGV[#KEYS + 1] ttl in ms.
# Generations are compared as strings: they are 62-bit numbers (cache.resilient), beyond
# what a Lua double holds exactly.
_GENERATIONS = """
local ttl = ARGV[#KEYS + 1]
local found = {}
for i, key in ipairs(KEYS) do
  local generation = redis.call('GET', key)
  if not generation then
    redis.call('SET', key, ARGV[i], 'PX', ttl)
    generation = ARGV[i]
  end
  found[i] = generation
end
return found
"""

# KEYS[1] entry, KEYS[2] generation key; ARGV[1] generation, ARGV[2] value, ARGV[3] ttl.
_PUT_IF_GENERATION = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# KEYS[1] the lease; ARGV[1] its owner, ARGV[2] ttl in ms.
_HOLD = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


#: A write-through: entries, generations, the generations' TTL, the message to publish.
_Write = tuple[Sequence[tuple[str, Entry, float]], Mapping[str, int], float, str | None]


def _encode(entry: Entry) -> bytes:
    return b"%d|%b" % (entry.version, entry.body)


def _decode(raw: bytes | str | None) -> Entry | None:
    if raw is None:
        return None
    assert isinstance(raw, bytes)  # the client is built with decode_responses=False
    version, _, body = raw.partition(b"|")
    return Entry(int(version), body)


_PUBSUB_PING_EVERY = 1.0
_PUBSUB_DEADLINE = 3.0


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def redis_client(url: str, timeout: float) -> aioredis.Redis:
    """The process's Redis connection pool: the cache's, and the rate limiter's."""
    return aioredis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=False,
        max_connections=256,
    )


class RedisCache:
    def __init__(
        self,
        url: str,
        *,
        namespace: str = "twotier",
        timeout: float = 0.5,
        client: aioredis.Redis | None = None,
    ) -> None:
        self._url = url
        self._timeout = timeout
        self._prefix = f"{namespace}:"
        self._channel = f"{namespace}:invalidations"
        self._redis = client if client is not None else redis_client(url, timeout)
        self._put_if_newer = self._redis.register_script(_PUT_IF_NEWER)
        self._generations = self._redis.register_script(_GENERATIONS)
        self._put_if_generation = self._redis.register_script(_PUT_IF_GENERATION)
        self._hold = self._redis.register_script(_HOLD)
        self._gets: TickBatcher[str, Entry | None] = TickBatcher(self._get_batch)
        self._writes: TickBatcher[_Write, list[bool]] = TickBatcher(self._write_batch)
        self._write_numbers = itertools.count()

    def _key(self, key: str) -> str:
        return self._prefix + key

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        try:
            yield
        except (RedisError, OSError, TimeoutError) as error:
            raise CacheUnavailable(f"cache unavailable: {type(error).__name__}: {error}") from error

    async def get(self, key: str) -> Entry | None:
        """One entry; the GETs of one turn of the event loop go as one MGET (batching)."""
        return await self._gets.load(key, key)

    async def _get_batch(self, keys: Mapping[str, str]) -> dict[str, Entry | None]:
        names = list(keys)
        return dict(zip(names, await self.get_many(names), strict=True))

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

    async def put_many_if_newer(self, items: Sequence[tuple[str, Entry, float]]) -> list[bool]:
        if not items:
            return []
        if len(items) == 1:  # a miss of one read: one EVALSHA, no pipeline
            key, entry, ttl = items[0]
            return [await self.put_if_newer(key, entry, ttl)]

        def queue(pipe: aioredis.client.Pipeline) -> None:
            self._queue_puts(pipe, items)

        async with self._guard():
            return [bool(stored) for stored in await self._pipelined(queue)]

    def _queue_puts(
        self, pipe: aioredis.client.Pipeline, items: Sequence[tuple[str, Entry, float]]
    ) -> None:
        """Queue a ``put_if_newer`` of each item on ``pipe``, as EVALSHA: redis-py's own
        script objects would ask ``SCRIPT EXISTS`` first on every pipeline (profiled: a
        round trip of its own on each fill and write)."""
        sha = self._put_if_newer.sha
        for key, entry, ttl in items:
            pipe.evalsha(sha, 1, self._key(key), entry.version, _encode(entry), _ms(ttl))

    async def _pipelined(self, queue: Callable[[aioredis.client.Pipeline], None]) -> list[Any]:
        """Run the commands ``queue`` puts on a pipeline; if Redis lost the scripts (a
        restart, SCRIPT FLUSH), load them and run them again: every command queued here
        is conditional or sets a value it was given, so running twice changes nothing."""
        for attempt in (1, 2):
            async with self._redis.pipeline(transaction=False) as pipe:
                queue(pipe)
                try:
                    return list(await pipe.execute())
                except NoScriptError:
                    if attempt == 2:
                        raise
            for script in (self._put_if_newer, self._generations, self._put_if_generation):
                await self._redis.script_load(script.script)
        raise AssertionError("unreachable")

    async def get_with_generations(
        self, pairs: Sequence[tuple[str, str]], candidates: Sequence[int], ttl: float
    ) -> list[tuple[Entry | None, int]]:
        if not pairs:
            return []
        keys = [self._key(k) for pair in pairs for k in pair]
        async with self._guard():
            raws = await self._redis.mget(keys)
            entries, generations = raws[0::2], list(raws[1::2])
            missing = [i for i, generation in enumerate(generations) if generation is None]
            if missing:
                made = await self._generations(
                    keys=[keys[2 * i + 1] for i in missing],
                    args=[*(candidates[i] for i in missing), _ms(ttl)],
                )
                for i, generation in zip(missing, made, strict=True):
                    generations[i] = generation
        return [
            (_decode(raw), int(generation or 0))
            for raw, generation in zip(entries, generations, strict=True)
        ]

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

    async def write(
        self,
        items: Sequence[tuple[str, Entry, float]],
        generations: Mapping[str, int],
        generation_ttl: float,
    ) -> list[bool]:
        return await self._write(items, generations, generation_ttl, None)

    async def write_and_publish(
        self,
        items: Sequence[tuple[str, Entry, float]],
        generations: Mapping[str, int],
        generation_ttl: float,
        message: str,
    ) -> list[bool]:
        return await self._write(items, generations, generation_ttl, message)

    async def _write(
        self,
        items: Sequence[tuple[str, Entry, float]],
        generations: Mapping[str, int],
        generation_ttl: float,
        message: str | None,
    ) -> list[bool]:
        """The write-throughs of one turn of the event loop go as one pipeline
        (``batching``): each is conditional or sets values of its own, so putting them
        side by side changes nothing but the round trips."""
        name = str(next(self._write_numbers))
        return await self._writes.load(name, (items, generations, generation_ttl, message))

    async def _write_batch(self, writes: Mapping[str, _Write]) -> dict[str, list[bool]]:
        def queue(pipe: aioredis.client.Pipeline) -> None:
            for items, generations, generation_ttl, _ in writes.values():
                self._queue_puts(pipe, items)
                for key, value in generations.items():
                    pipe.set(self._key(key), value, px=_ms(generation_ttl))
            for *_, message in writes.values():
                if message is not None:
                    pipe.publish(self._channel, message)

        async with self._guard():
            results = await self._pipelined(queue)
        answers: dict[str, list[bool]] = {}
        at = 0
        for name, (items, generations, _, _) in writes.items():
            answers[name] = [bool(stored) for stored in results[at : at + len(items)]]
            at += len(items) + len(generations)
        return answers

    async def publish(self, message: str) -> None:
        async with self._guard():
            await self._redis.publish(self._channel, message)

    async def messages(self) -> AsyncIterator[str | None]:
        """Invalidation messages; None once subscribed. Raises when the link is lost.

        The subscription has a connection of its own, not one of the process's pool: its
        reads idle between messages, and over TLS a read of redis-py's pub/sub does not end
        on cancellation; closing its own client is what stops it (a pooled connection held
        a test's shutdown). A ping each second, unanswered for ``_PUBSUB_DEADLINE``, counts
        as lost.
        """
        client = aioredis.from_url(
            self._url, socket_connect_timeout=self._timeout, decode_responses=True
        )
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(self._channel)
            last_heard = time.monotonic()
            last_ping = 0.0
            subscribed = False
            while True:
                message = await pubsub.get_message(timeout=_PUBSUB_PING_EVERY)
                now = time.monotonic()
                if message is not None:
                    last_heard = now
                    kind = message["type"]
                    if kind == "subscribe" and not subscribed:
                        subscribed = True
                        yield None
                    elif kind == "message":
                        yield str(message["data"])
                if now - last_heard > _PUBSUB_DEADLINE:
                    raise CacheUnavailable("invalidation channel silent: link lost")
                if now - last_ping >= _PUBSUB_PING_EVERY:
                    await pubsub.ping()
                    last_ping = now
        except (RedisError, OSError) as error:
            raise CacheUnavailable(f"invalidation channel lost: {error}") from error
        finally:
            with contextlib.suppress(RedisError, OSError, RuntimeError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                await client.aclose()

    async def hold(self, key: str, owner: str, ttl: float) -> bool:
        async with self._guard():
            return bool(await self._hold(keys=[self._key(key)], args=[owner, _ms(ttl)]))

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

    def gauges(self) -> dict[str, float]:
        return {}  # all of it lives in Redis (see INFO there)

    async def close(self) -> None:
        await self._redis.aclose()
