"""The in-process cache: an LRU bounded in entries and in bytes, with per-entry TTL.

Each method runs without awaiting, so on one event loop it is atomic by construction.

Items are stored as plain ``(expires_at, version, body)`` tuples, which CPython's garbage
collector stops tracking: a cache of a million entries then adds nothing to a collection's
pause (as objects it would add tens of milliseconds to every full collection).

Expired entries are dropped without waiting for a read: every key is also filed under the
sixteenth of a second it expires in, and each write (and, while anything is held, a timer
once a second) drops what is filed under the sixteenths gone by. A process that filled its
cache and then went quiet gives the memory back within about a second of the TTL, not when
someone happens to read the same key again. A key replaced or evicted leaves its sixteenth
at once (a dictionary deletion), so nothing is left behind to clean up in bulk later: a
heap of expiries did leave its entries behind, and rebuilding it stalled a write (and every
request waiting on the event loop) for up to 73 ms at 100,000 entries and 553 ms at
600,000 (``benchmarks/memory_cache_stalls.py``). No call drops more than ``_SWEEP_BUDGET``
entries: a mass expiry is dropped over several calls, the timer coming back at once while
any are due. What stalls remain are the dictionary's own: evictions leave deleted slots,
and now and then it rebuilds itself (up to 8 ms at 100,000 entries, 62 ms at 600,000).
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence

from twotier.cache.base import Entry

#: Bytes an entry costs beyond the characters of its key and body: the tuple, the dictionary
#: slot, the version and expiry objects, the expiry index's slot and the key's and body's
#: object headers (measured with tracemalloc on CPython 3.11), so that the bound is on
#: memory, not only on payload.
ENTRY_OVERHEAD = 330
#: An entry larger than this share of the byte bound is not kept: it would push out a
#: large part of the cache for one value.
_LARGEST_SHARE = 8
_SWEEP_EVERY = 1.0  # seconds between timed sweeps of expired entries
_TICKS_PER_SECOND = 16  # the expiry index's resolution
_SWEEP_BUDGET = 1000  # entries one sweep drops at most


#: ``Entry(version, body)`` without the named tuple's own ``__new__`` (a Python function):
#: every hit held here makes one.
_entry = tuple.__new__


def _tick(expires_at: float) -> int:
    """The sixteenth of a second (of the monotonic clock) an expiry falls in."""
    return int(expires_at * _TICKS_PER_SECOND)


def entry_size(key: str, body: bytes) -> int:
    """The bytes an entry is counted as."""
    return ENTRY_OVERHEAD + len(key) + len(body)


class MemoryCache:
    def __init__(self, max_entries: int = 100_000, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[float, int, bytes]] = OrderedDict()
        self._bytes = 0
        # The expiry index: each key held, filed under the tick its entry expires in (a
        # dictionary used as an ordered set), and a heap of those ticks, each once.
        self._expiring: dict[int, dict[str, None]] = {}
        self._ticks: list[int] = []
        self._sweeper: asyncio.TimerHandle | None = None
        # Leases (``hold``): apart from the entries, so that no eviction can drop one.
        self._leases: dict[str, tuple[str, float]] = {}

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes_held(self) -> int:
        return self._bytes

    def _live(self, key: str) -> Entry | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires_at, version, body = item
        if expires_at <= time.monotonic():
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return _entry(Entry, (version, body))

    def _drop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._released(key, item)

    def _released(self, key: str, item: tuple[float, int, bytes]) -> None:
        """What an item taken out of ``_items`` held: its bytes and its place in the index."""
        self._bytes -= entry_size(key, item[2])
        self._unfile(key, item[0])

    def _file(self, key: str, expires_at: float) -> None:
        tick = _tick(expires_at)
        keys = self._expiring.get(tick)
        if keys is None:
            # A tick's keys stay filed (emptied or not) until it is swept: one heap entry
            # a tick, however often its last key leaves and another comes.
            keys = self._expiring[tick] = {}
            heapq.heappush(self._ticks, tick)
        keys[key] = None

    def _unfile(self, key: str, expires_at: float) -> None:
        keys = self._expiring.get(_tick(expires_at))
        if keys is not None:
            keys.pop(key, None)

    def store(self, key: str, entry: Entry, ttl: float) -> bool:
        """Keep ``entry`` under ``key`` whatever it held (no await: safe from a callback);
        False if it is too large to keep (and then nothing is held under ``key``)."""
        size = entry_size(key, entry.body)
        if size > self.max_bytes // _LARGEST_SHARE:
            # Not kept; neither is an older version that would now be wrong.
            self._drop(key)
            return False
        now = time.monotonic()
        expires_at = now + ttl
        items = self._items
        held = items.get(key)
        if held is not None:
            # Replaced where it stands, then moved to the end: popping it and adding it
            # again would leave a deleted slot in the dictionary, and enough of those make
            # it rebuild itself whole, a stall of tens of milliseconds at 600,000 entries
            # (benchmarks/memory_cache_stalls.py).
            self._released(key, held)
            items[key] = (expires_at, entry.version, entry.body)
            items.move_to_end(key)
        else:
            items[key] = (expires_at, entry.version, entry.body)
        self._bytes += size
        self._file(key, expires_at)
        self._sweep(now)
        while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
            self._released(*self._items.popitem(last=False))
        self._sweep_later()
        return True

    def _sweep(self, now: float) -> bool:
        """Drop the entries filed under ticks gone by (every one of them expired), at most
        ``_SWEEP_BUDGET``; whether none is left to drop."""
        ticks, expiring, items = self._ticks, self._expiring, self._items
        gone_by = _tick(now)
        budget = _SWEEP_BUDGET
        while ticks and ticks[0] < gone_by:
            keys = expiring[ticks[0]]
            while keys:
                if budget == 0:
                    return False
                key, _ = keys.popitem()
                item = items.pop(key, None)
                if item is not None:
                    self._bytes -= entry_size(key, item[2])
                budget -= 1
            del expiring[heapq.heappop(ticks)]
        return True

    def _sweep_later(self, delay: float = _SWEEP_EVERY) -> None:
        if self._sweeper is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): writes still sweep
            return
        self._sweeper = loop.call_later(delay, self._timed_sweep)

    def _timed_sweep(self) -> None:
        self._sweeper = None
        done = self._sweep(time.monotonic())
        if self._items:
            # More due than one sweep drops: the rest next, after what else is waiting.
            self._sweep_later(_SWEEP_EVERY if done else 0.0)

    #: The held read's (``_live`` itself: one call fewer on every hit held here).
    peek = _live

    async def get(self, key: str) -> Entry | None:
        return self._live(key)

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        return [self._live(key) for key in keys]

    async def put_if_newer(self, key: str, entry: Entry, ttl: float) -> bool:
        current = self._live(key)
        if current is not None and current.version >= entry.version:
            return False
        return self.store(key, entry, ttl)

    async def put_many_if_newer(self, items: Sequence[tuple[str, Entry, float]]) -> list[bool]:
        return [await self.put_if_newer(key, entry, ttl) for key, entry, ttl in items]

    async def get_with_generations(
        self, pairs: Sequence[tuple[str, str]], candidates: Sequence[int], ttl: float
    ) -> list[tuple[Entry | None, int]]:
        found: list[tuple[Entry | None, int]] = []
        for (key, generation_key), candidate in zip(pairs, candidates, strict=True):
            generation = self._live(generation_key)
            if generation is None:
                generation = Entry(candidate, b"")
                self.store(generation_key, generation, ttl)
            found.append((self._live(key), generation.version))
        return found

    async def put_if_generations(
        self, key: str, generations: Mapping[str, int], entry: Entry, ttl: float
    ) -> bool:
        for generation_key, value in generations.items():
            generation = self._live(generation_key)
            if generation is None or generation.version != value:
                return False
        return self.store(key, entry, ttl)

    async def set_generations(self, generations: Mapping[str, int], ttl: float) -> None:
        for key, value in generations.items():
            self.store(key, Entry(value, b""), ttl)

    async def hold(self, key: str, owner: str, ttl: float) -> bool:
        now = time.monotonic()
        holder, until = self._leases.get(key, (owner, now))
        if holder != owner and until > now:
            return False
        self._leases[key] = (owner, now + ttl)
        return True

    async def delete(self, keys: Sequence[str]) -> None:
        self.forget(keys)

    async def clear(self) -> None:
        self.forget_all()

    def forget(self, keys: Iterable[str]) -> None:
        """Drop keys at once (no await: safe to call from a callback)."""
        for key in keys:
            self._drop(key)

    def forget_all(self) -> None:
        self._leases.clear()
        self._items.clear()
        self._expiring.clear()
        self._ticks.clear()
        self._bytes = 0

    async def write(
        self,
        items: Sequence[tuple[str, Entry, float]],
        generations: Mapping[str, int],
        generation_ttl: float,
        dropped: Sequence[str] = (),
    ) -> list[bool]:
        stored = await self.put_many_if_newer(items)
        await self.set_generations(generations, generation_ttl)
        self.forget(dropped)
        return stored

    async def ping(self) -> None:
        return None

    def gauges(self) -> dict[str, float]:
        return {"memory_cache_entries": len(self._items), "memory_cache_bytes": self._bytes}

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self.forget_all()
