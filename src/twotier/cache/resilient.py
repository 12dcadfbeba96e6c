"""The cache as the policy uses it: a ``Cache`` in front of the real one that is never a
point of failure (a decorator, as dogpile.cache's proxy backends are).

A cache error or timeout is counted, logged, and told to a circuit breaker (3 failures in a
row open it for 2 s, then one trial call), so that a dead cache costs no timeout per request.
What each kind of call does then:

- a read (``get``, ``get_many``, ``get_with_generations``) raises ``CacheUnavailable`` (the
  caller serves from the database), at once while the cache is not to be used;
- a fill (``put_if_newer``, ``put_many_if_newer``, ``put_if_generation``) answers "not
  stored": failing one costs nothing but a later miss;
- a write-through (``write``) or a ``clear`` the cache did not take is remembered, and
  raises ``CacheUnavailable`` (the follower must not move past it; a request has committed
  and goes on);
- ``peek`` answers only while the cache is in plain use.
 A committed write whose write-through failed is
remembered; before the cache is used again, its write-through is made again (its entries
stored unless the cache holds newer ones, its generations moved; past ``MAX_PENDING``
remembered writes, the whole namespace is cleared instead), so a cache that missed writes is
never trusted with what it holds. Made again, not deleted: a deleted entry lets a fill that
read the row before the write, and reaches the cache late (redis-py retries a pipeline a
dead node broke), store the old row; the entry itself keeps it out by its version.

Other processes do not wait for this one: once the cache answers again they read what it
holds, which may be the entries these writes should have replaced (on a Redis Cluster, the
replica promoted after a failover answers at once). So what is remembered is also applied
in the background, tried every ``MEND_EVERY`` seconds until it lands, not at this
process's next request only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from twotier.breaker import BreakerState, CircuitBreaker
from twotier.cache.base import Cache, Entry
from twotier.errors import CacheUnavailable
from twotier.telemetry import CACHE_ERRORS, GaugeReadings

log = logging.getLogger("twotier.policy")

T = TypeVar("T")

#: Past this many writes that missed the cache, recovery clears the namespace instead.
MAX_PENDING = 10_000
#: Seconds between the background attempts to apply what is remembered.
MEND_EVERY = 0.2
_NOT_IN_USE = "the cache is not in use now (its breaker is open, or writes it missed are pending)"


def new_generation() -> int:
    """A generation a reader makes (none was there): a random 61-bit number, so a lost one
    is never guessed back."""
    return random.getrandbits(61)


#: Written generations have this bit set, and carry the moment of the write.
_WRITTEN = 1 << 61
_RANDOM_BITS = 20


def written_generation(now: float | None = None) -> int:
    """A generation a write moves to: the flag bit, the write's moment in milliseconds (41
    bits: until the year 2039 and beyond, wrapping after 69 years) and 20 random bits."""
    moment = int((time.time() if now is None else now) * 1000) & ((1 << 41) - 1)
    return _WRITTEN | moment << _RANDOM_BITS | random.getrandbits(_RANDOM_BITS)


def moved_within(generation: int, seconds: float, now: float | None = None) -> bool:
    """Was ``generation`` made by a write less than ``seconds`` ago (by this host's clock)?"""
    if not generation & _WRITTEN or seconds <= 0:
        return False
    moment = (generation >> _RANDOM_BITS) & ((1 << 41) - 1)
    age = (int((time.time() if now is None else now) * 1000) - moment) & ((1 << 41) - 1)
    # Past half the range the difference is negative: the writer's clock is ahead of ours,
    # and the write is as recent as can be.
    return age >= 1 << 40 or age < seconds * 1000


class ResilientCache:
    """A ``Cache``: ``inner``'s, guarded."""

    def __init__(
        self,
        cache: Cache,
        breaker: CircuitBreaker | None = None,
        *,
        generation_ttl: float,
        shards_fail_alone: bool = False,
    ) -> None:
        self.inner = cache
        self.breaker = breaker or CircuitBreaker()
        self.generation_ttl = generation_ttl
        #: A Redis Cluster: one shard fails while the others answer every process. This
        #: process's breaker and backlog then say nothing of the shards a write goes to,
        #: which the other processes go on reading: its write-through is always tried
        #: (if all its shards answer it lands; else it is remembered), never skipped.
        self.shards_fail_alone = shards_fail_alone
        self._pending_items: dict[str, tuple[Entry, float]] = {}
        self._pending_generations: set[str] = set()
        self._pending_everything = False
        self._pending = False  # anything of the three above
        self._mender: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """The cache may be used now with nothing to do first (the common case, checked
        without a coroutine); else ``usable()`` says, applying what is pending."""
        return not self._pending and self.breaker.allows()

    @property
    def closed(self) -> bool:
        """The cache is in use and has nothing pending, read without touching the breaker
        (``ready`` lets a half-open breaker's one trial through, and spends it)."""
        return not self._pending and self.breaker.closed

    async def usable(self) -> bool:
        """Whether the cache may be used now: the breaker lets calls through, and every
        write it missed has been applied."""
        if not self.breaker.allows():
            return False
        if self._pending_items or self._pending_generations or self._pending_everything:
            return await self._apply_pending()
        return True

    def _failed(self, error: CacheUnavailable, operation: str) -> None:
        CACHE_ERRORS.labels(operation).inc()
        log.warning("cache call failed, serving from the database: %s", error)
        self.breaker.failed()

    # -- reads: raise when the cache cannot answer ----------------------------------------

    async def _read(self, call: Callable[[], Awaitable[T]]) -> T:
        if not (self.ready or await self.usable()):
            raise CacheUnavailable(_NOT_IN_USE)
        try:
            found = await call()
        except CacheUnavailable as error:
            self._failed(error, "read")
            raise
        self.breaker.succeeded()
        return found

    async def get(self, key: str) -> Entry | None:
        # ``_read`` written out: the hot read's, where each call and frame counts.
        if not (self.ready or await self.usable()):
            raise CacheUnavailable(_NOT_IN_USE)
        try:
            entry = await self.inner.get(key)
        except CacheUnavailable as error:
            self._failed(error, "read")
            raise
        self.breaker.succeeded()
        return entry

    def peek(self, key: str) -> Entry | None:
        # ``closed`` written out: the held read's, where each call counts.
        if self._pending or not self.breaker.closed:
            return None
        return self.inner.peek(key)

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        return await self._read(lambda: self.inner.get_many(keys))

    async def get_with_generations(
        self, pairs: Sequence[tuple[str, str]], candidates: Sequence[int], ttl: float
    ) -> list[tuple[Entry | None, int]]:
        return await self._read(lambda: self.inner.get_with_generations(pairs, candidates, ttl))

    async def ping(self) -> None:
        await self.inner.ping()

    # -- fills: best effort ---------------------------------------------------------------

    async def _fill(self, call: Awaitable[T], failed: T) -> T:
        try:
            return await call
        except CacheUnavailable as error:
            self._failed(error, "fill")
            return failed

    async def put_if_newer(self, key: str, entry: Entry, ttl: float) -> bool:
        return await self._fill(self.inner.put_if_newer(key, entry, ttl), False)

    async def put_many_if_newer(self, items: Sequence[tuple[str, Entry, float]]) -> list[bool]:
        return await self._fill(self.inner.put_many_if_newer(items), [False] * len(items))

    async def put_if_generations(
        self, key: str, generations: Mapping[str, int], entry: Entry, ttl: float
    ) -> bool:
        return await self._fill(self.inner.put_if_generations(key, generations, entry, ttl), False)

    # -- writes: made, or remembered and made again ----------------------------------------

    async def write(
        self,
        items: Sequence[tuple[str, Entry, float]],
        generations: Mapping[str, int],
        generation_ttl: float,
        dropped: Sequence[str] = (),
    ) -> list[bool]:
        """A write-through, after a commit; one the cache does not take is remembered (and
        ``CacheUnavailable`` raised; a generation to drop is then moved instead, which
        invalidates the same entries). On a Redis Cluster it is tried even when the cache
        is not to be trusted here (a shard down, the breaker open, writes missed): the
        other processes read the live shards."""
        if self.ready or self.shards_fail_alone or await self.usable():
            try:
                stored = await self.inner.write(items, generations, generation_ttl, dropped)
            except CacheUnavailable as error:
                self._failed(error, "write")
            else:
                self.breaker.succeeded()
                return stored
        self.remember(items, [*generations, *dropped])
        raise CacheUnavailable("the write is remembered, and made again once the cache answers")

    async def set_generations(self, generations: Mapping[str, int], ttl: float) -> None:
        await self.write((), generations, ttl)

    async def delete(self, keys: Sequence[str]) -> None:
        await self._or_emptied(lambda: self.inner.delete(keys), "delete")

    async def clear(self) -> None:
        await self._or_emptied(self.inner.clear, "clear")

    async def _or_emptied(self, call: Callable[[], Awaitable[None]], operation: str) -> None:
        """Entries forgotten; if the cache cannot now, it is emptied before it is used
        again (a stale entry may be among them), and ``CacheUnavailable`` raised."""
        if await self.usable():
            try:
                await call()
            except CacheUnavailable as error:
                self._failed(error, operation)
            else:
                self.breaker.succeeded()
                return
        self.remember_everything()
        raise CacheUnavailable("the cache is emptied once it answers")

    def remember(
        self, items: Iterable[tuple[str, Entry, float]], generations: Iterable[str]
    ) -> None:
        """A committed write the cache did not see (its entries, its generations): make
        its write-through again before trusting the cache."""
        for key, entry, ttl in items:
            held = self._pending_items.get(key)
            if held is None or held[0].version < entry.version:
                self._pending_items[key] = (entry, ttl)
        self._pending_generations.update(generations)
        self._pending = True
        if self.pending > MAX_PENDING:
            self.remember_everything()
        self._mend_soon()

    def remember_everything(self) -> None:
        """The cache may hold anything stale (a bulk load it could not be told of)."""
        self._pending_everything = True
        self._pending = True
        self._pending_items.clear()
        self._pending_generations.clear()
        self._mend_soon()

    def _mend_soon(self) -> None:
        if self._mender is not None and not self._mender.done():
            return
        with contextlib.suppress(RuntimeError):  # no event loop: applied at the next use
            self._mender = asyncio.get_running_loop().create_task(self._mend())

    async def _mend(self) -> None:
        """Apply what is remembered as soon as the cache takes it, whether or not this
        process serves a request meanwhile; quietly (each failure is not news)."""
        while self._pending:
            await asyncio.sleep(MEND_EVERY)
            await self._apply_pending(quiet=True)

    async def close(self) -> None:
        """Stop the background attempts (what is still remembered is given up: the
        follower or the TTL mends those entries), and close the cache."""
        if self._mender is not None:
            self._mender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._mender
        await self.inner.close()

    @property
    def pending(self) -> int:
        return len(self._pending_items) + len(self._pending_generations)

    async def _apply_pending(self, *, quiet: bool = False) -> bool:
        items, generations = dict(self._pending_items), list(self._pending_generations)
        everything = self._pending_everything
        try:
            if everything:
                await self.inner.clear()
            else:
                await self.inner.write(
                    [(key, entry, ttl) for key, (entry, ttl) in items.items()],
                    {g: written_generation() for g in generations},
                    self.generation_ttl,
                )
        except CacheUnavailable as error:
            if not quiet:
                self._failed(error, "recover")
            return False
        for key, applied in items.items():
            if self._pending_items.get(key) is applied:  # not replaced by a newer one since
                del self._pending_items[key]
        self._pending_generations.difference_update(generations)
        if everything:
            self._pending_everything = False
        self._pending = bool(
            self._pending_items or self._pending_generations or self._pending_everything
        )
        self.breaker.succeeded()
        return True

    def gauges(self) -> dict[str, float]:
        return self.inner.gauges()

    def readings(self) -> GaugeReadings:
        """The breaker's state and the backlog, and what the cache holds in this process."""
        state = self.breaker.state
        readings: dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]] = {
            "twotier_circuit_breaker_state": (
                "The cache circuit breaker: 1 for its current state.",
                {(("state", s.value),): float(s is state) for s in BreakerState},
            ),
            "twotier_cache_pending_invalidations": (
                "Committed writes the cache has not seen yet (applied when it is back).",
                {(): float(self.pending)},
            ),
        }
        for name, value in self.inner.gauges().items():
            held = "Bytes (estimated)" if name.endswith("_bytes") else "Entries"
            readings[f"twotier_{name}"] = (f"{held} held in this process.", {(): value})
        return readings
