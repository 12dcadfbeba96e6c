"""The Redis cache: one Redis or a Redis Cluster (ElastiCache, ``rediss://`` for TLS).

A value is stored as ``b"<version>|<body>"`` so that the conditional writes can compare
versions inside Redis, in one Lua script, atomically. Every script touches one key, or an
entry and its generation, which share a hash slot (``policy.CacheKeys``): on a cluster each
runs on one shard. Reads of many keys and pipelines are split by slot and sent to each
node at once by redis-py's cluster client.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.exceptions import NoScriptError

from twotier.batching import TickBatcher
from twotier.cache.base import Entry
from twotier.cache.invalidations import joined
from twotier.cache.redis_client import (
    RedisClient,
    initialized,
    link_failed,
    node_url,
    redis_client,
)
from twotier.cache.redis_pubsub import Channels, Subscription, listen
from twotier.cache.redis_topology import ReplicaCounts, SlotOwners
from twotier.errors import CacheUnavailable
from twotier.telemetry import CACHE_UNREPLICATED

log = logging.getLogger(__name__)

#: Seconds a primary whose replica did not confirm a write is not waited for.
_UNREPLICATED_PAUSE = 5.0
#: Seconds a primary's count of replicas is trusted before it is asked again.
_REPLICAS_FRESH = 5.0
#: Seconds a slot that changed owner is read around: every process's remembered writes
#: land within ``MEND_EVERY`` and a cache timeout or two of the new owner answering.
_OWNER_CHANGE_GRACE = 2.0

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

# KEYS[1] a generation key; ARGV[1] the candidate, ARGV[2] ttl in ms. Generations are
# kept as strings: they are 62-bit numbers (cache.resilient), beyond what a Lua double
# holds exactly.
_GENERATION = """
local generation = redis.call('GET', KEYS[1])
if not generation then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  generation = ARGV[1]
end
return generation
"""

# KEYS[1] entry, KEYS[2..n+1] generation keys; ARGV[1..n] their generations, ARGV[n+1]
# the encoded entry, ARGV[n+2] ttl in ms.
_PUT_IF_GENERATIONS = """
local n = #KEYS - 1
for i = 1, n do
  if redis.call('GET', KEYS[i + 1]) ~= ARGV[i] then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[n + 1], 'PX', ARGV[n + 2])
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


_Pipeline = aioredis.client.Pipeline | aioredis.cluster.ClusterPipeline

#: A write-through: entries, generations, the generations' TTL, the generations dropped,
#: the message to publish.
_Write = tuple[
    Sequence[tuple[str, Entry, float]], Mapping[str, int], float, Sequence[str], str | None
]


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
    def __init__(
        self,
        url: str,
        *,
        namespace: str = "twotier",
        timeout: float = 0.5,
        client: RedisClient | None = None,
        replica_wait: float = 0.1,
    ) -> None:
        self._url = url
        self._timeout = timeout
        self._prefix = f"{namespace}:"
        self._redis = client if client is not None else redis_client(url, timeout)
        self._cluster = isinstance(self._redis, aioredis.RedisCluster)
        self._replica_wait = replica_wait
        self._owners = SlotOwners(_OWNER_CHANGE_GRACE)
        self._unreplicated: dict[str, float] = {}  # primary -> until when not waited for
        self._replicas = ReplicaCounts(_REPLICAS_FRESH)
        self._channels = Channels(namespace, sharded=self._cluster)
        self._put_if_newer = self._redis.register_script(_PUT_IF_NEWER)
        self._generation = self._redis.register_script(_GENERATION)
        self._put_if_generations = self._redis.register_script(_PUT_IF_GENERATIONS)
        self._hold = self._redis.register_script(_HOLD)
        self._gets: TickBatcher[str, Entry | None] = TickBatcher(self._get_batch)
        self._writes: TickBatcher[_Write, list[bool]] = TickBatcher(self._write_batch)
        self._write_numbers = itertools.count()

    def _key(self, key: str) -> str:
        return self._prefix + key

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        try:
            if self._cluster:
                await initialized(self._redis)
            yield
        except Exception as error:
            if not link_failed(error):
                raise
            raise CacheUnavailable(f"cache unavailable: {type(error).__name__}: {error}") from error

    def peek(self, key: str) -> Entry | None:
        return None  # nothing is held in the process (the near-cache holds in front)

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
            raws = await self._mget([self._key(key) for key in keys])
        return [_decode(raw) for raw in raws]

    async def _mget(self, keys: list[str]) -> list[bytes | str | None]:
        """One MGET; on a cluster one per slot, sent to each node at once, and nothing from
        a slot that changed owner a moment ago (``cache.redis_topology``): a miss."""
        if not isinstance(self._redis, aioredis.RedisCluster):
            return list(await self._redis.mget(keys))
        raws = await self._redis.mget_nonatomic(keys)
        untrusted = self._owners.untrusted(self._redis, keys)
        if untrusted is None:
            return raws
        return [None if skip else raw for raw, skip in zip(raws, untrusted, strict=True)]

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

        def queue(pipe: _Pipeline) -> None:
            self._queue_puts(pipe, items)

        async with self._guard():
            return [bool(stored) for stored in await self._pipelined(queue)]

    def _queue_puts(self, pipe: _Pipeline, items: Sequence[tuple[str, Entry, float]]) -> None:
        """Queue a ``put_if_newer`` of each item on ``pipe``, as EVALSHA: redis-py's own
        script objects would ask ``SCRIPT EXISTS`` first on every pipeline (profiled: a
        round trip of its own on each fill and write)."""
        sha = self._put_if_newer.sha
        for key, entry, ttl in items:
            pipe.execute_command(
                "EVALSHA", sha, 1, self._key(key), entry.version, _encode(entry), _ms(ttl)
            )

    async def _pipelined(self, queue: Callable[[_Pipeline], None]) -> list[Any]:
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
            for script in (self._put_if_newer, self._generation, self._put_if_generations):
                await self._redis.script_load(script.script)
        raise AssertionError("unreachable")

    async def get_with_generations(
        self, pairs: Sequence[tuple[str, str]], candidates: Sequence[int], ttl: float
    ) -> list[tuple[Entry | None, int]]:
        if not pairs:
            return []
        # An entry filed under several generations is in as many pairs: read (and sent,
        # a page of rows) once.
        names = [name for name, _ in pairs]
        unique = list(dict.fromkeys(names)) if len(set(names)) < len(names) else names
        generation_keys = [self._key(generation_key) for _, generation_key in pairs]
        async with self._guard():
            raws = await self._mget([*map(self._key, unique), *generation_keys])
            generations = raws[len(unique) :]
            missing = [i for i, generation in enumerate(generations) if generation is None]
            if missing:

                def queue(pipe: _Pipeline) -> None:
                    sha = self._generation.sha
                    for i in missing:
                        pipe.execute_command(
                            "EVALSHA", sha, 1, generation_keys[i], candidates[i], _ms(ttl)
                        )

                made = await self._pipelined(queue)
                for i, generation in zip(missing, made, strict=True):
                    generations[i] = generation
        entries = [_decode(raw) for raw in raws[: len(unique)]]
        if unique is not names:
            held = dict(zip(unique, entries, strict=True))
            entries = [held[name] for name in names]
        return [
            (entry, int(generation or 0))
            for entry, generation in zip(entries, generations, strict=True)
        ]

    async def put_if_generations(
        self, key: str, generations: Mapping[str, int], entry: Entry, ttl: float
    ) -> bool:
        async with self._guard():
            stored = await self._put_if_generations(
                keys=[self._key(key), *map(self._key, generations)],
                args=[*generations.values(), _encode(entry), _ms(ttl)],
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
        dropped: Sequence[str] = (),
    ) -> list[bool]:
        return await self._write(items, generations, generation_ttl, dropped, None)

    async def write_and_publish(
        self,
        items: Sequence[tuple[str, Entry, float]],
        generations: Mapping[str, int],
        generation_ttl: float,
        dropped: Sequence[str],
        message: str,
    ) -> list[bool]:
        return await self._write(items, generations, generation_ttl, dropped, message)

    async def _write(
        self,
        items: Sequence[tuple[str, Entry, float]],
        generations: Mapping[str, int],
        generation_ttl: float,
        dropped: Sequence[str],
        message: str | None,
    ) -> list[bool]:
        """The write-throughs of one turn of the event loop go as one pipeline
        (``batching``): each is conditional or sets values of its own, so putting them
        side by side changes nothing but the round trips."""
        name = str(next(self._write_numbers))
        return await self._writes.load(name, (items, generations, generation_ttl, dropped, message))

    async def _write_batch(self, writes: Mapping[str, _Write]) -> dict[str, list[bool]]:
        """The write-throughs of one loop turn as one pipeline: every entry's conditional
        put, then each generation moved once, then one invalidation message a sender
        (``invalidations.joined``). Profiled: the lists' generation, moved by every write, was a
        quarter of a batch of POSTs' commands, the messages another. A generation moved
        once is enough: every write of the batch committed before any of it is sent, so a
        fill that reads its new value reads the database after all of them."""
        moved: dict[str, tuple[int, float]] = {}
        dropped: dict[str, None] = {}
        for _, generations, generation_ttl, gone, _ in writes.values():
            for key, value in generations.items():
                moved[key] = (value, generation_ttl)
            dropped.update(dict.fromkeys(gone))
        written = (  # made only on a cluster
            self._key(key)
            for key in itertools.chain(
                (item[0] for items, *_ in writes.values() for item in items), moved, dropped
            )
        )

        waited: list[ClusterNode] = []

        def queue(pipe: _Pipeline) -> None:
            for items, *_ in writes.values():
                self._queue_puts(pipe, items)
            for key, (value, generation_ttl) in moved.items():
                pipe.set(self._key(key), value, px=_ms(generation_ttl))
            for keys in self._by_slot(dropped):
                # Not ``pipe.unlink``: a cluster's pipeline takes one key there.
                pipe.execute_command("UNLINK", *keys)
            for message in joined([m for *_, m in writes.values() if m is not None]):
                self._queue_publish(pipe, message)
            for node in waited:
                pipe.execute_command("WAIT", 1, _ms(self._replica_wait), target_nodes=[node])

        async with self._guard():
            waited[:], unwaited = await self._replica_waits(written)
            results = await self._pipelined(queue)
        CACHE_UNREPLICATED.inc(unwaited)
        if waited:
            self._replicated(waited, results[-len(waited) :])
        answers: dict[str, list[bool]] = {}
        at = 0
        for name, (items, *_) in writes.items():
            answers[name] = [bool(stored) for stored in results[at : at + len(items)]]
            at += len(items)
        return answers

    def _by_slot(self, keys: Iterable[str]) -> list[list[str]]:
        """``keys`` (unprefixed) as full names, in one group where a command may name them
        all: every one on one Redis, those of one slot on a cluster (the generations of
        one resource's field share a hash tag, so a write's are one group a field)."""
        names = [self._key(key) for key in keys]
        if not names:
            return []
        if not isinstance(self._redis, aioredis.RedisCluster):
            return [names]
        slots: dict[int, list[str]] = {}
        for name in names:
            slots.setdefault(self._redis.keyslot(name), []).append(name)
        return list(slots.values())

    async def _replica_waits(self, keys: Iterable[str]) -> tuple[list[ClusterNode], int]:
        """On a cluster, the primaries these keys live on that have replicas: a ``WAIT``
        for one replica is queued on each after the writes, on the same connection, so it
        covers them. A write-through acknowledged by a primary alone would be lost if that
        primary failed over before replicating it, and the promoted replica would serve the
        previous version: the write is answered once a replica holds it too (or the wait
        ran out: see ``_replicated``). Also: how many primaries written to, with replicas,
        are not waited for now (a wait on them ran out a moment ago): as much at risk."""
        if not isinstance(self._redis, aioredis.RedisCluster) or self._replica_wait <= 0:
            return [], 0
        holders_of = self._redis.nodes_manager.slots_cache
        primaries: dict[str, ClusterNode] = {}
        for key in keys:
            holders = holders_of.get(self._redis.keyslot(key))
            if holders:
                primaries[holders[0].name] = holders[0]
        await self._replicas.learn(self._redis, primaries.values())
        now = time.monotonic()
        waited: list[ClusterNode] = []
        unwaited = 0
        for name, node in primaries.items():
            if self._replicas.of(name) == 0:
                continue
            if self._unreplicated.get(name, 0) <= now:
                waited.append(node)
            else:
                unwaited += 1
        return waited, unwaited

    def _replicated(self, primaries: list[ClusterNode], acknowledged: list[Any]) -> None:
        """A primary whose replica did not confirm in time (down, or far behind) is counted
        and logged, and not waited for again for a while: one dead replica must not add
        the wait to every write."""
        for node, replicas in zip(primaries, acknowledged, strict=True):
            if not replicas:
                CACHE_UNREPLICATED.inc()
                log.warning("no replica of %s confirmed a write-through in time", node.name)
                self._unreplicated[node.name] = time.monotonic() + _UNREPLICATED_PAUSE

    def _queue_publish(self, pipe: _Pipeline, message: str) -> None:
        channel = self._channels.next()
        if self._channels.sharded:
            pipe.execute_command("SPUBLISH", channel, message)
        else:
            pipe.publish(channel, message)

    async def publish(self, message: str) -> None:
        """Publish ``message`` on the next channel; on a cluster, on the next ones in turn
        should a channel's shard not answer: every subscriber listens to every channel, so
        any one of them carries it (a shard failing over must not silence the others)."""
        attempts = len(self._channels.names)
        for attempt in range(1, attempts + 1):

            def queue(pipe: _Pipeline) -> None:
                self._queue_publish(pipe, message)

            try:
                async with self._guard():
                    await self._pipelined(queue)
                return
            except CacheUnavailable:
                if attempt == attempts:
                    raise

    async def messages(self) -> AsyncIterator[str | None]:
        """Invalidation messages; None once subscribed. Raises when the link is lost
        (``cache.redis_pubsub``). The subscriptions have connections of their own, not
        the process's pool: their reads idle between messages."""
        async for message in listen(
            await self._subscriptions(),
            sharded=self._channels.sharded,
            connect_timeout=self._timeout,
        ):
            yield message

    async def _subscriptions(self) -> list[Subscription]:
        """One subscription per server: on a cluster, per primary owning a channel (by the
        slot map as it is now: a subscription starts again after slots move)."""
        if not isinstance(self._redis, aioredis.RedisCluster):
            return [Subscription(self._url, self._channels.names)]
        async with self._guard():
            await self._redis.nodes_manager.initialize()
        by_node: dict[tuple[str, int], list[str]] = {}
        for channel in self._channels.names:
            node = self._redis.get_node_from_key(channel)
            if node is None:
                raise CacheUnavailable(f"no node serves the slot of {channel}")
            by_node.setdefault((str(node.host), int(node.port)), []).append(channel)
        return [
            Subscription(node_url(self._url, host, port), channels)
            for (host, port), channels in by_node.items()
        ]

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
