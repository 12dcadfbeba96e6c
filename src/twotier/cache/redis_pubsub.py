"""The invalidation channel over Redis pub/sub, on one Redis or on a Redis Cluster.

On one Redis it is one channel (``PUBLISH``/``SUBSCRIBE``). On a cluster, classic pub/sub
sends every message to every node; shard channels (``SPUBLISH``/``SSUBSCRIBE``, Redis 7)
stay within the shard that owns the channel's slot. So the cluster carries
``SHARD_CHANNELS`` channels whose hash tags are spread evenly over the slots (every shard
owns some), a publisher takes them in turn, and a subscriber holds one connection per
primary, subscribed to the channels that primary owns.

A subscription never reconnects by itself: redis-py's ``PubSub`` would reconnect and
subscribe again quietly after a dropped link, and whatever was published in between would
be lost without a trace. Here any lost link, a channel whose slot moved away (the server
unsubscribes it), or a connection silent for ``DEADLINE`` seconds despite the pings ends
the subscription with ``CacheUnavailable``: the near-cache then empties itself and
subscribes again (``cache.near``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import RedisError

from twotier.cache.redis_client import link_failed
from twotier.errors import CacheUnavailable

PING_EVERY = 1.0
DEADLINE = 3.0
SHARD_CHANNELS = 16
_CLOSE_WAIT = 0.5  # seconds the subscriptions are given to end once cancelled
_SLOTS = 16384


def _spread_tags(count: int) -> list[str]:
    """``count`` hash tags, the i-th hashing into the i-th of ``count`` equal slot ranges:
    whatever the split of the slots between shards, each shard owns some channel."""
    width = _SLOTS // count
    tags: list[str | None] = [None] * count
    for number in itertools.count():
        tag = str(number)
        part = key_slot(tag.encode()) // width
        if part < count and tags[part] is None:
            tags[part] = tag
            if all(t is not None for t in tags):
                return [t for t in tags if t is not None]
    raise AssertionError("unreachable")


_SHARD_TAGS = _spread_tags(SHARD_CHANNELS)


class Channels:
    """The invalidation channels of a namespace; ``next()`` the one to publish on."""

    def __init__(self, namespace: str, *, sharded: bool) -> None:
        base = f"{namespace}:invalidations"
        self.sharded = sharded
        self.names = [f"{base}:{{{tag}}}" for tag in _SHARD_TAGS] if sharded else [base]
        self._turn = itertools.cycle(self.names)

    def next(self) -> str:
        return next(self._turn)


@dataclass(frozen=True, slots=True)
class Subscription:
    """Channels to subscribe to over one connection, to the server at ``url``."""

    url: str
    channels: Sequence[str]


def _subscriber(url: str, timeout: float) -> aioredis.Redis:
    """A client of one connection that raises on a lost link instead of reconnecting."""
    return aioredis.from_url(
        url,
        socket_connect_timeout=timeout,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
    )


_SUBSCRIBED = object()


async def listen(
    subscriptions: Sequence[Subscription], *, sharded: bool, connect_timeout: float
) -> AsyncIterator[str | None]:
    """Messages of every subscription; ``None`` once all are subscribed. Raises
    CacheUnavailable as soon as any of them is lost."""
    queue: asyncio.Queue[object] = asyncio.Queue()
    clients = [_subscriber(each.url, connect_timeout) for each in subscriptions]
    pubsubs = [client.pubsub() for client in clients]
    pumps = [
        asyncio.create_task(_pump(pubsub, each.channels, sharded, queue))
        for pubsub, each in zip(pubsubs, subscriptions, strict=True)
    ]
    try:
        waiting = len(pumps)
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            if item is _SUBSCRIBED:
                waiting -= 1
                if waiting == 0:
                    yield None
            else:
                assert isinstance(item, str)
                yield item
    finally:
        for pump in pumps:
            pump.cancel()
        await asyncio.wait(pumps, timeout=_CLOSE_WAIT)
        # Closing the clients is what ends a read still pending (over TLS a pub/sub read
        # does not end on cancellation alone).
        for pubsub, client in zip(pubsubs, clients, strict=True):
            with contextlib.suppress(RedisError, OSError, RuntimeError):
                # Typed from redis-py 8 on, untyped before: either version passes.
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
                await client.aclose()
        await asyncio.wait(pumps, timeout=_CLOSE_WAIT)


async def _pump(
    pubsub: aioredis.client.PubSub,
    channels: Sequence[str],
    sharded: bool,
    queue: asyncio.Queue[object],
) -> None:
    try:
        for channel in channels:  # one at a time: a shard's channels lie in several slots
            await (pubsub.ssubscribe(channel) if sharded else pubsub.subscribe(channel))
        confirmed = 0
        last_heard = time.monotonic()
        last_ping = 0.0
        while True:
            message = await pubsub.get_message(timeout=PING_EVERY)
            now = time.monotonic()
            if message is not None:
                last_heard = now
                kind = message["type"]
                if kind in ("subscribe", "ssubscribe"):
                    confirmed += 1
                    if confirmed == len(channels):
                        queue.put_nowait(_SUBSCRIBED)
                elif kind in ("message", "smessage"):
                    queue.put_nowait(str(message["data"]))
                elif kind in ("unsubscribe", "sunsubscribe"):
                    # The server dropped the channel: its slot moved to another shard.
                    raise CacheUnavailable(f"invalidation channel {message['channel']} moved")
            if now - last_heard > DEADLINE:
                raise CacheUnavailable("invalidation channel silent: link lost")
            if now - last_ping >= PING_EVERY:
                await pubsub.ping()
                last_ping = now
    except CacheUnavailable as error:
        queue.put_nowait(error)
    except Exception as error:
        # Whatever ends a pump ends the subscription: raised in the task alone, it would
        # leave ``listen`` waiting, and a live near-cache deaf to invalidations.
        if link_failed(error):
            error = CacheUnavailable(f"invalidation channel lost: {error}")
        queue.put_nowait(error)
