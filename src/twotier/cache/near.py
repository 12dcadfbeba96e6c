"""A near-cache: an in-process L1 in front of a shared cache (Redis), kept coherent by
invalidation messages between processes.

A hit in L1 costs a dictionary lookup instead of a network round trip and a client library
call. Coherence:

- a write in this process updates L1 at once (if the shared cache accepted that version);
- a write in another process arrives as an invalidation message (Redis pub/sub) and drops
  the key here, within the message's delivery time (about a millisecond on one host);
- L1 is used only while the subscription is live; when it breaks, L1 is emptied and not
  refilled until the subscription is back, so a lost message cannot leave a stale entry;
- an L1 fill that raced with an invalidation is not kept (an epoch counter tells), nor a
  generation-filed fill that raced with this process's own move of a generation (a count
  of moves tells: L1 keeps generations by overwriting them, so an older one would win);
- entries live at most ``ttl`` seconds in L1: the bound on staleness should a message be
  lost while the connection still looks alive.

Point lookups and generation-filed entries (lists, reads by xp) both go through L1; a
generation is kept locally like any key, and dropped when another process moves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Protocol

from twotier.cache.base import CacheServer, Entry
from twotier.cache.invalidations import EVERYTHING, InvalidationBus
from twotier.cache.memory import MemoryCache
from twotier.errors import CacheUnavailable

log = logging.getLogger(__name__)


class SharedCache(CacheServer, InvalidationBus, Protocol):
    """A shared cache that also carries invalidation messages (RedisCache)."""

    async def write_and_publish(
        self,
        items: Sequence[tuple[str, Entry, float]],
        generations: Mapping[str, int],
        generation_ttl: float,
        dropped: Sequence[str],
        message: str,
    ) -> list[bool]:
        """``write``, and publish ``message`` once it is done: in the same round trip."""


_CLOSE_WAIT = 2.0  # seconds close() gives the listener to stop


class NearCache:
    def __init__(
        self,
        shared: SharedCache,
        *,
        max_entries: int = 100_000,
        max_bytes: int = 64 * 1024 * 1024,
        ttl: float = 10.0,
    ) -> None:
        self.shared = shared
        self.ttl = ttl
        self.local = MemoryCache(max_entries, max_bytes)
        self._origin = uuid.uuid4().hex
        self._epoch = 0
        self._moves = 0  # generations this process moved (``_after_generations``)
        self._live = False  # subscribed: L1 may be used
        self._listener: asyncio.Task[None] | None = None

    @property
    def live(self) -> bool:
        return self._live

    # -- the subscription ---------------------------------------------------------------

    def _listen(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._run_listener())

    async def _run_listener(self) -> None:
        delay = 0.05
        while True:
            try:
                async for message in self.shared.messages():
                    if message is None:  # (re)subscribed: start from an empty L1
                        self._forget_all()
                        self._live = True
                        delay = 0.05
                        continue
                    self._apply(message)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("near-cache invalidations interrupted: %s", error)
            self._live = False
            self._forget_all()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _apply(self, message: str) -> None:
        origin, _, keys = message.partition("\n")
        if origin == self._origin:
            return
        self._epoch += 1
        if keys == EVERYTHING:
            self.local.forget_all()
            return
        self.local.forget(keys.split("\n"))

    def _forget_all(self) -> None:
        self._epoch += 1
        self.local.forget_all()

    def _local_ttl(self, ttl: float) -> float:
        return min(ttl, self.ttl)

    # -- point lookups, through L1 ------------------------------------------------------

    def peek(self, key: str) -> Entry | None:
        return self.local.peek(key) if self._live else None

    async def get(self, key: str) -> Entry | None:
        if self._live:
            entry = await self.local.get(key)
            if entry is not None:
                return entry
        else:
            self._listen()
        epoch = self._epoch
        entry = await self.shared.get(key)
        if entry is not None and self._live and epoch == self._epoch:
            await self.local.put_if_newer(key, entry, self.ttl)
        return entry

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        if not self._live:
            self._listen()
            return await self.shared.get_many(keys)
        found = await self.local.get_many(keys)
        missing = [key for key, entry in zip(keys, found, strict=True) if entry is None]
        if missing:
            epoch = self._epoch
            fetched = dict(zip(missing, await self.shared.get_many(missing), strict=True))
            keep = self._live and epoch == self._epoch
            for index, key in enumerate(keys):
                if found[index] is None and (entry := fetched[key]) is not None:
                    found[index] = entry
                    if keep:
                        await self.local.put_if_newer(key, entry, self.ttl)
        return found

    async def put_if_newer(self, key: str, entry: Entry, ttl: float) -> bool:
        epoch = self._epoch
        stored = await self.shared.put_if_newer(key, entry, ttl)
        await self._after_put([(key, entry, ttl)], [stored], epoch)
        return stored

    async def put_many_if_newer(self, items: Sequence[tuple[str, Entry, float]]) -> list[bool]:
        epoch = self._epoch
        stored = await self.shared.put_many_if_newer(items)
        await self._after_put(items, stored, epoch)
        return stored

    async def _after_put(
        self, items: Sequence[tuple[str, Entry, float]], stored: Sequence[bool], epoch: int
    ) -> None:
        keep = self._live and epoch == self._epoch
        for (key, entry, ttl), accepted in zip(items, stored, strict=True):
            if accepted and keep:
                await self.local.put_if_newer(key, entry, self._local_ttl(ttl))
            else:  # a newer version is in the shared cache, or L1 cannot be trusted now
                self.local.forget([key])

    async def write(
        self,
        items: Sequence[tuple[str, Entry, float]],
        generations: Mapping[str, int],
        generation_ttl: float,
        dropped: Sequence[str] = (),
    ) -> list[bool]:
        epoch = self._epoch
        # The other processes hear of it in the write's own round trip (profiled: a
        # PUBLISH of its own was a tenth of a write's time).
        changed = [*(key for key, _, _ in items), *generations, *dropped]
        message = self._message(changed)
        try:
            stored = await self.shared.write_and_publish(
                items, generations, generation_ttl, dropped, message
            )
        except CacheUnavailable:
            # The database has changed and the shared cache may not have: no L1 may keep
            # answering with what the write replaced (the caller remembers the write). On
            # a cluster the message may still get through another shard.
            self._epoch += 1
            self.local.forget(changed)
            with contextlib.suppress(CacheUnavailable):
                await self._announce(changed)
            raise
        await self._after_put(items, stored, epoch)
        self._after_generations(generations, generation_ttl, epoch)
        if dropped:
            self._moves += 1
            self.local.forget(dropped)
        return stored

    def _message(self, keys: Sequence[str]) -> str:
        """What tells the other processes' near-caches that these keys changed."""
        return self._origin + "\n" + "\n".join(keys)

    async def _announce(self, keys: Sequence[str]) -> None:
        """Tell the other processes' near-caches that these keys changed."""
        if keys:
            await self.shared.publish(self._message(keys))

    # -- generation-filed entries: both the entry and its generation are kept locally -----

    async def get_with_generations(
        self, pairs: Sequence[tuple[str, str]], candidates: Sequence[int], ttl: float
    ) -> list[tuple[Entry | None, int]]:
        if not self._live:
            self._listen()
            return await self.shared.get_with_generations(pairs, candidates, ttl)
        found: list[tuple[Entry | None, int] | None] = []
        for key, generation_key in pairs:
            local_generation = await self.local.get(generation_key)
            local_entry = await self.local.get(key) if local_generation is not None else None
            if local_entry is not None and local_generation is not None:
                found.append((local_entry, local_generation.version))
            else:
                found.append(None)
        missing = [i for i, pair in enumerate(found) if pair is None]
        if missing:
            epoch, moves = self._epoch, self._moves
            fetched = await self.shared.get_with_generations(
                [pairs[i] for i in missing], [candidates[i] for i in missing], ttl
            )
            keep = self._live and (epoch, moves) == (self._epoch, self._moves)
            for i, (entry, generation) in zip(missing, fetched, strict=True):
                found[i] = (entry, generation)
                if keep:
                    key, generation_key = pairs[i]
                    await self.local.set_generations({generation_key: generation}, self.ttl)
                    # Kept as the shared cache holds it: the policy checks it against its
                    # generations, kept here beside it (an entry filed under several of
                    # them matches none alone).
                    if entry is not None:
                        self.local.store(key, entry, self.ttl)
        return [pair for pair in found if pair is not None]

    async def put_if_generations(
        self, key: str, generations: Mapping[str, int], entry: Entry, ttl: float
    ) -> bool:
        epoch, moves = self._epoch, self._moves
        stored = await self.shared.put_if_generations(key, generations, entry, ttl)
        if stored and self._live and (epoch, moves) == (self._epoch, self._moves):
            await self.local.set_generations(generations, self.ttl)
            await self.local.put_if_generations(key, generations, entry, self._local_ttl(ttl))
        return stored

    async def set_generations(self, generations: Mapping[str, int], ttl: float) -> None:
        epoch = self._epoch
        await self.shared.set_generations(generations, ttl)
        self._after_generations(generations, ttl, epoch)
        await self._announce(list(generations))

    def _after_generations(self, generations: Mapping[str, int], ttl: float, epoch: int) -> None:
        if not generations:
            return
        self._moves += 1
        if self._live and epoch == self._epoch:
            for key, value in generations.items():
                self.local.store(key, Entry(value, b""), self._local_ttl(ttl))
        else:
            self.local.forget(generations)

    async def hold(self, key: str, owner: str, ttl: float) -> bool:
        return await self.shared.hold(key, owner, ttl)

    async def delete(self, keys: Sequence[str]) -> None:
        self.local.forget(keys)
        await self.shared.delete(keys)
        await self._announce(keys)

    async def clear(self) -> None:
        self._forget_all()
        await self.shared.clear()
        await self.shared.publish(self._origin + "\n" + EVERYTHING)

    async def ping(self) -> None:
        await self.shared.ping()

    def gauges(self) -> dict[str, float]:
        return {"near_cache_entries": len(self.local), "near_cache_bytes": self.local.bytes_held}

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            # Bounded: over TLS, redis-py's pub/sub read can sit on a cancellation
            # (seen with rediss://); shutting down must not wait on it.
            await asyncio.wait({self._listener}, timeout=_CLOSE_WAIT)
            if self._listener.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await self._listener
        self.local.forget_all()
        await self.shared.close()
