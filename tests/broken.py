"""A deliberately broken cache, for the tests that prove the version check matters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twotier.cache.base import Cache, Entry


class UnversionedCache:
    """The classic hand-made cache: writes and fills overwrite whatever is there."""

    def __init__(self, inner: Cache) -> None:
        self.inner = inner

    async def put_if_newer(self, key: str, entry: Entry, ttl: float) -> bool:
        await self.inner.delete([key])
        return await self.inner.put_if_newer(key, entry, ttl)

    async def put_many_if_newer(self, items: Sequence[tuple[str, Entry, float]]) -> list[bool]:
        return [await self.put_if_newer(key, entry, ttl) for key, entry, ttl in items]

    async def write(
        self,
        items: Sequence[tuple[str, Entry, float]],
        generations: Mapping[str, int],
        generation_ttl: float,
        dropped: Sequence[str] = (),
    ) -> list[bool]:
        await self.inner.delete([key for key, _, _ in items])
        return await self.inner.write(items, generations, generation_ttl, dropped)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
