"""The cache tier's port: a dumb key-value store with two atomic conditional writes.

Adapters know nothing of TTL policy, single-flight or what the keys mean; that is the
policy's business. They guarantee only that each method is atomic on the server, and that
a cache keeping local copies in other processes (the near-cache) tells them of every change
(``write``, ``set_generations``, ``delete``, ``clear``) itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol


class Entry(NamedTuple):
    """A cached value and the version (or generation) it was read at.

    ``body`` is the exact JSON a client receives; empty means "known to be absent". A
    named tuple, not a frozen dataclass: every cache read makes one, and a frozen
    dataclass's constructor costs three times as much (it sets each field through
    ``object.__setattr__``).
    """

    version: int
    body: bytes

    @property
    def absent(self) -> bool:
        return not self.body


class Cache(Protocol):
    async def get(self, key: str) -> Entry | None: ...

    def peek(self, key: str) -> Entry | None:
        """The entry under ``key`` if this process holds it and may answer with it now,
        without a round trip or an await; else None (``get`` then asks the cache)."""

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]: ...

    async def put_if_newer(self, key: str, entry: Entry, ttl: float) -> bool:
        """Store ``entry`` unless the key holds an equal or newer version; True if stored."""

    async def put_many_if_newer(self, items: Sequence[tuple[str, Entry, float]]) -> list[bool]:
        """``put_if_newer`` for each (key, entry, ttl), in one round trip where possible."""

    async def get_with_generations(
        self, pairs: Sequence[tuple[str, str]], candidates: Sequence[int], ttl: float
    ) -> list[tuple[Entry | None, int]]:
        """For each (key, generation key): the entry and the generation it is checked against.

        A missing generation is set to its candidate first (atomically, if still missing).
        """

    async def put_if_generations(
        self, key: str, generations: Mapping[str, int], entry: Entry, ttl: float
    ) -> bool:
        """Store ``entry`` only if each generation key still holds its value (an entry
        filed under several generations is named with a tag they all share)."""

    async def set_generations(self, generations: Mapping[str, int], ttl: float) -> None:
        """Give each generation key a new value, so entries filed under the old one miss."""

    async def write(
        self,
        items: Sequence[tuple[str, Entry, float]],
        generations: Mapping[str, int],
        generation_ttl: float,
        dropped: Sequence[str] = (),
    ) -> list[bool]:
        """A write-through, after a commit: ``put_if_newer`` each item, set each
        generation and delete each ``dropped`` one (a missing generation is made anew by
        the next read, so deleting moves it, and keeps nothing where no read looks), in one
        round trip where possible; True for each item stored."""

    async def delete(self, keys: Sequence[str]) -> None: ...

    async def clear(self) -> None:
        """Forget every key of this cache's namespace."""

    async def ping(self) -> None:
        """Raise CacheUnavailable unless the cache answers."""

    def gauges(self) -> dict[str, float]:
        """Live figures for /metrics, named without the ``twotier_`` prefix: entries
        (``…_entries``) and bytes (``…_bytes``) held in this process; empty where the cache
        keeps nothing in the process."""

    async def close(self) -> None: ...


class FollowerState(Protocol):
    """What the change-log follower keeps in the cache server beside the entries: a lease
    (one follower per database follows at a time) and its position in the log. Every cache
    adapter is one; the policy never uses it."""

    async def hold(self, key: str, owner: str, ttl: float) -> bool:
        """A lease: take ``key`` for ``owner`` for ``ttl`` seconds if no one holds it, or
        extend it if ``owner`` does; whether ``owner`` holds it now. Atomic on the cache
        server, and never a copy local to one process."""

    async def get(self, key: str) -> Entry | None: ...

    async def put_if_newer(self, key: str, entry: Entry, ttl: float) -> bool:
        """Store ``entry`` unless the key holds an equal or newer version; True if stored."""


class CacheServer(Cache, FollowerState, Protocol):
    """What every cache adapter is: the entries, and the follower's state beside them."""
