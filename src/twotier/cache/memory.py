"""The in-process cache: a bounded LRU with per-entry TTL.

Each method runs without awaiting, so on one event loop it is atomic by construction.

Items are stored as plain ``(expires_at, version, body)`` tuples, which CPython's garbage
collector stops tracking: a cache of a million entries then adds nothing to a collection's
pause (as objects it would add tens of milliseconds to every full collection).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence

from twotier.cache.base import Entry


class MemoryCache:
    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[float, int, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def _live(self, key: str) -> Entry | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires_at, version, body = item
        if expires_at <= time.monotonic():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return Entry(version, body)

    def _store(self, key: str, entry: Entry, ttl: float) -> None:
        self._items[key] = (time.monotonic() + ttl, entry.version, entry.body)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    async def get(self, key: str) -> Entry | None:
        return self._live(key)

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        return [self._live(key) for key in keys]

    async def put_if_newer(self, key: str, entry: Entry, ttl: float) -> bool:
        current = self._live(key)
        if current is not None and current.version >= entry.version:
            return False
        self._store(key, entry, ttl)
        return True

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
                self._store(generation_key, generation, ttl)
            found.append((self._live(key), generation.version))
        return found

    async def put_if_generation(
        self, key: str, generation_key: str, entry: Entry, ttl: float
    ) -> bool:
        generation = self._live(generation_key)
        if generation is None or generation.version != entry.version:
            return False
        self._store(key, entry, ttl)
        return True

    async def set_generations(self, generations: Mapping[str, int], ttl: float) -> None:
        for key, value in generations.items():
            self._store(key, Entry(value, b""), ttl)

    async def delete(self, keys: Sequence[str]) -> None:
        self.forget(keys)

    async def clear(self) -> None:
        self.forget_all()

    def forget(self, keys: Iterable[str]) -> None:
        """Drop keys at once (no await: safe to call from a callback)."""
        for key in keys:
            self._items.pop(key, None)

    def forget_all(self) -> None:
        self._items.clear()

    async def announce(self, keys: Sequence[str]) -> None:
        return None  # one process: nobody else holds a copy

    async def ping(self) -> None:
        return None

    def gauges(self) -> dict[str, float]:
        return {"memory_cache_entries": len(self._items)}

    async def close(self) -> None:
        self._items.clear()
