"""The caching policy: the one place that knows both tiers.

Reads are lazy (cache-aside): a hit returns the cached JSON bytes as they are; a miss asks
the database once per key per process (single-flight) and fills the cache with a jittered
TTL. Absent rows are cached briefly too (negative caching).

Writes go through: the database commits first, then the cache gets the new value (or a
tombstone). Every row has a version that grows with each write, and the cache only ever
replaces an entry by a newer version, atomically on the cache server. So a slow fill that
read an old row can never overwrite the value a later write put there.

List queries are filed under a generation: the ``xp`` value's own generation when the query
filters on ``xp`` (the seed's lookup), else one generation for all other lists. A write
gives the generations it touches (the row's old and new ``xp``, and the global one) new
random values; an entry is a hit only if it was filled under the current generation, and a
fill is stored only if the generation has not moved since the fill read the database.

The cache is never a point of failure: when it errs, reads come from the database and a
circuit breaker stops trying for a while. Writes the cache missed are remembered and
applied (as invalidations) before the cache is trusted again.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import urlencode

import orjson

from twotier.breaker import BreakerState, CircuitBreaker
from twotier.cache.base import Cache, CacheUnavailable, Entry
from twotier.dataset import Row
from twotier.heroes import HeroIn, HeroRecord
from twotier.singleflight import SingleFlight
from twotier.store.base import HeroQuery, Store, StoreUnavailable
from twotier.telemetry import CACHE_ERRORS, LIVE_STATE, GaugeReadings, Outcomes

log = logging.getLogger(__name__)

T = TypeVar("T")

ALL_LISTS = "gen:heroes"
#: Past this many writes that missed the cache, recovery clears the namespace instead.
MAX_PENDING = 10_000


class Outcome(StrEnum):
    """How a read was served, as reported in the ``X-Cache`` header."""

    HIT = "HIT"
    MISS = "MISS"
    BYPASS = "BYPASS"


@dataclass(frozen=True, slots=True)
class Served:
    """A read's answer: the JSON body (None: no such row), how it was served, and for a
    single row its version (0 where unknown: lists, or an absence read from the database)."""

    body: bytes | None
    outcome: Outcome
    version: int = 0


@dataclass(frozen=True, slots=True)
class Tuning:
    ttl: float = 300.0
    jitter: float = 0.1
    negative_ttl: float = 30.0


@dataclass(frozen=True, slots=True)
class AnswerLimits:
    """The most a batch read may answer: a client cannot make the server build (or the
    database read) more than this for one request."""

    rows: int = 10_000
    bytes: int = 4 * 1024 * 1024


class AnswerTooLarge(Exception):
    """A batch read whose answer would pass a bound (``what``: rows or bytes); nothing of
    it was sent, and no more than about twice the row bound was read."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"the answer would hold more than {limit} {what}")
        self.what = what
        self.limit = limit


def hero_key(hero_id: int) -> str:
    return f"hero:{hero_id}"


def xp_generation_key(xp: int) -> str:
    return f"gen:xp:{xp}"


def xp_key(xp: int) -> str:
    """All rows with one xp value (the seed's lookup), filed under that value's generation."""
    return f"xp:{xp}"


def list_key(query: HeroQuery) -> str:
    return "heroes?" + urlencode([*query.filters, ("after", query.after), ("limit", query.limit)])


def list_generation_key(query: HeroQuery) -> str:
    xp = query.filter_value("xp")
    return ALL_LISTS if xp is None else xp_generation_key(int(xp))


def page_json(records: Sequence[HeroRecord], limit: int) -> bytes:
    """A page of at most ``limit`` rows; ``records`` may hold one more, to tell if more exist."""
    page = records[:limit]
    more = len(records) > limit
    return orjson.dumps(
        {"items": [r.public() for r in page], "next_after": page[-1].id if more else None}
    )


def _rows_json(records: Iterable[HeroRecord]) -> bytes:
    return orjson.dumps([r.public() for r in records])


def _json_array(items: Iterable[bytes]) -> bytes:
    """A JSON array of already-encoded items (cached bytes), skipping empty ones."""
    return b"[" + b",".join(item for item in items if item) + b"]"


def _join_arrays(arrays: Iterable[bytes]) -> bytes:
    """Concatenate JSON arrays (cached bytes) into one, without decoding them."""
    return _json_array(array[1:-1] for array in arrays)


def _rows_in(body: bytes) -> int:
    """The rows in a cached body (one row, or a JSON array of them), without decoding it:
    rows are flat objects, and ``{"`` can only open one (a quote inside a string is
    escaped)."""
    return body.count(b'{"')


#: The fewest bytes a row's JSON takes (empty text, one-digit numbers), plus its comma.
_SMALLEST_ROW = len(HeroRecord(0, "", "", "", 0, "", 0).to_json()) + 1

#: What a fill answers for a value it did not read completely (the row bound cut it short).
_UNREAD = Entry(-1, b"")


_READ, _LIST, _BATCH_ID, _BATCH_XP = (
    Outcomes(op) for op in ("read", "list", "batch_id", "batch_xp")
)


def _count(outcomes: Outcomes, body: bytes | None, outcome: Outcome, version: int = 0) -> Served:
    """The read's answer, counted under its operation and outcome."""
    if outcome is Outcome.HIT:
        outcomes.hit.inc()
    elif outcome is Outcome.MISS:
        outcomes.miss.inc()
    else:
        outcomes.bypass.inc()
    return Served(body, outcome, version)


def _new_generation() -> int:
    return random.getrandbits(62)


class CachePolicy:
    def __init__(
        self,
        store: Store,
        cache: Cache,
        tuning: Tuning | None = None,
        breaker: CircuitBreaker | None = None,
        limits: AnswerLimits | None = None,
    ) -> None:
        self.store = store
        self.cache = cache
        self.tuning = tuning or Tuning()
        self.limits = limits or AnswerLimits()
        self.breaker = breaker or CircuitBreaker()
        self._flights: SingleFlight[Entry] = SingleFlight()
        self._pending_keys: set[str] = set()
        self._pending_generations: set[str] = set()
        self._pending_overflow = False

    # -- reads --------------------------------------------------------------------------

    async def read(self, hero_id: int, *, use_cache: bool = True) -> Served:
        """One hero by id: its JSON, or None if there is no such row."""
        key = hero_key(hero_id)
        if use_cache and await self._cache_usable():
            try:
                entry = await self.cache.get(key)
            except CacheUnavailable as error:
                self._cache_failed(error, "read")
            else:
                self.breaker.succeeded()
                if entry is not None:
                    return _count(_READ, entry.body or None, Outcome.HIT, entry.version)
                entry = await self._flights.do(key, lambda: self._fill_hero(hero_id, key))
                return _count(_READ, entry.body or None, Outcome.MISS, entry.version)
        record = await self.store.get(hero_id)
        if record is None:
            return _count(_READ, None, Outcome.BYPASS)
        return _count(_READ, record.to_json(), Outcome.BYPASS, record.version)

    async def _fill_hero(self, hero_id: int, key: str) -> Entry:
        record = await self.store.get(hero_id)
        if record is None:
            entry, ttl = Entry(0, b""), self.tuning.negative_ttl
        else:
            entry, ttl = Entry(record.version, record.to_json()), self.tuning.ttl
        await self._try_cache(self.cache.put_if_newer(key, entry, self._jittered(ttl)), "read")
        return entry

    async def find(self, query: HeroQuery, *, use_cache: bool = True) -> Served:
        """A page of heroes matching ``query``, as the JSON of a HeroPage."""
        if use_cache and await self._cache_usable():
            key, generation_key = list_key(query), list_generation_key(query)
            try:
                [(entry, generation)] = await self.cache.get_with_generations(
                    [(key, generation_key)], [_new_generation()], self._generation_ttl
                )
            except CacheUnavailable as error:
                self._cache_failed(error, "list")
            else:
                self.breaker.succeeded()
                if entry is not None and entry.version == generation:
                    return _count(_LIST, entry.body, Outcome.HIT)
                entry = await self._flights.do(
                    f"{key}@{generation}",
                    lambda: self._fill_list(query, key, generation_key, generation),
                )
                return _count(_LIST, entry.body, Outcome.MISS)
        records = await self.store.find(_one_more(query))
        return _count(_LIST, page_json(records, query.limit), Outcome.BYPASS)

    async def _fill_list(
        self, query: HeroQuery, key: str, generation_key: str, generation: int
    ) -> Entry:
        records = await self.store.find(_one_more(query))
        entry = Entry(generation, page_json(records, query.limit))
        ttl = self._jittered(self.tuning.ttl)
        await self._try_cache(self.cache.put_if_generation(key, generation_key, entry, ttl), "list")
        return entry

    async def read_many(self, hero_ids: Sequence[int], *, use_cache: bool = True) -> Served:
        """The heroes that exist among ``hero_ids``, in request order, as one JSON array."""
        unique = list(dict.fromkeys(hero_ids))
        if use_cache and await self._cache_usable():
            try:
                entries = await self.cache.get_many([hero_key(i) for i in unique])
            except CacheUnavailable as error:
                self._cache_failed(error, "batch_id")
            else:
                self.breaker.succeeded()
                found = {i: e for i, e in zip(unique, entries, strict=True) if e is not None}
                missing = [hero_key(i) for i in unique if i not in found]
                if missing:
                    filled = await self._flights.do_many(missing, self._fill_heroes)
                    found |= {int(key.split(":")[1]): entry for key, entry in filled.items()}
                bodies = {i: entry.body for i, entry in found.items()}
                self._check_answer(bodies, hero_ids)
                body = _json_array(bodies[i] for i in hero_ids)
                return _count(_BATCH_ID, body, Outcome.MISS if missing else Outcome.HIT)
        records = await self.store.get_many(unique)
        bodies = {i: record.to_json() for i, record in records.items()}
        present = [i for i in hero_ids if i in bodies]
        self._check_answer(bodies, present)
        return _count(_BATCH_ID, _json_array(bodies[i] for i in present), Outcome.BYPASS)

    async def _fill_heroes(self, keys: list[str]) -> dict[str, Entry]:
        records = await self.store.get_many([int(key.split(":")[1]) for key in keys])
        filled: dict[str, Entry] = {}
        fills: list[tuple[str, Entry, float]] = []
        for key in keys:
            record = records.get(int(key.split(":")[1]))
            if record is None:
                entry, ttl = Entry(0, b""), self.tuning.negative_ttl
            else:
                entry, ttl = Entry(record.version, record.to_json()), self.tuning.ttl
            filled[key] = entry
            fills.append((key, entry, self._jittered(ttl)))
        await self._try_cache(self.cache.put_many_if_newer(fills), "batch_id")
        return filled

    async def read_by_xp(self, xps: Sequence[int], *, use_cache: bool = True) -> Served:
        """Every hero with each ``xps`` value, in request order (by id within one value),
        as one JSON array. Each value's rows are cached under that value's generation."""
        unique = list(dict.fromkeys(xps))
        if use_cache and await self._cache_usable():
            pairs = [(xp_key(xp), xp_generation_key(xp)) for xp in unique]
            try:
                found = await self.cache.get_with_generations(
                    pairs, [_new_generation() for _ in unique], self._generation_ttl
                )
            except CacheUnavailable as error:
                self._cache_failed(error, "batch_xp")
            else:
                self.breaker.succeeded()
                bodies: dict[int, bytes] = {}
                misses: dict[str, tuple[int, int]] = {}
                for xp, (entry, generation) in zip(unique, found, strict=True):
                    if entry is not None and entry.version == generation:
                        bodies[xp] = entry.body
                    else:
                        misses[f"{xp_key(xp)}@{generation}"] = (xp, generation)
                # Past a bound with what the cache holds already: no database work at all.
                self._check_answer(bodies, [xp for xp in xps if xp in bodies])
                missed = bool(misses)
                if misses:
                    filled = await self._flights.do_many(
                        list(misses), lambda keys: self._fill_xps({k: misses[k] for k in keys})
                    )
                    # A fill reads at most the row bound. One cut short (by this request's
                    # values, or by another request's sharing its flights) leaves values
                    # unread: this request reads those itself, once, unshared.
                    unread = {k: misses[k] for k, entry in filled.items() if entry is _UNREAD}
                    if unread:
                        filled |= await self._fill_xps(unread)
                    if any(entry is _UNREAD for entry in filled.values()):
                        raise AnswerTooLarge("rows", self.limits.rows)
                    bodies |= {misses[key][0]: entry.body for key, entry in filled.items()}
                self._check_answer(bodies, xps)
                body = _join_arrays(bodies[xp] for xp in xps)
                return _count(_BATCH_XP, body, Outcome.MISS if missed else Outcome.HIT)
        records = await self.store.by_xp(unique, self.limits.rows + 1)
        if sum(len(rows) for rows in records.values()) > self.limits.rows:
            raise AnswerTooLarge("rows", self.limits.rows)
        bodies = {xp: _rows_json(records[xp]) for xp in unique}
        self._check_answer(bodies, xps)
        return _count(_BATCH_XP, _join_arrays(bodies[xp] for xp in xps), Outcome.BYPASS)

    async def _fill_xps(self, wanted: Mapping[str, tuple[int, int]]) -> dict[str, Entry]:
        bound = self.limits.rows + 1
        records = await self.store.by_xp([xp for xp, _ in wanted.values()], bound)
        cut_at: int | None = None
        if sum(len(rows) for rows in records.values()) >= bound:
            # Cut short: values are read in order, so those below the last one reached
            # are whole; the last one and the rest were cut or never reached.
            cut_at = max(xp for xp, rows in records.items() if rows)
        filled: dict[str, Entry] = {}
        for flight_key, (xp, generation) in wanted.items():
            if cut_at is not None and xp >= cut_at:
                filled[flight_key] = _UNREAD
                continue
            entry = Entry(generation, _rows_json(records[xp]))
            filled[flight_key] = entry
            ttl = self._jittered(self.tuning.ttl)
            await self._try_cache(
                self.cache.put_if_generation(xp_key(xp), xp_generation_key(xp), entry, ttl),
                "batch_xp",
            )
        return filled

    def _check_answer(self, bodies: Mapping[int, bytes], order: Sequence[int]) -> None:
        """Raise AnswerTooLarge if the answer made of ``bodies`` in ``order`` (a key may
        repeat) would pass a bound."""
        size = sum(len(bodies[key]) + 1 for key in order)
        if size > self.limits.bytes:
            raise AnswerTooLarge("bytes", self.limits.bytes)
        # Rows are counted only when the size says there could be too many: counting scans
        # every byte, and would cost a cached batch read a third of its time.
        if size // _SMALLEST_ROW > self.limits.rows:
            rows = {key: _rows_in(body) for key, body in bodies.items()}
            if sum(rows[key] for key in order) > self.limits.rows:
                raise AnswerTooLarge("rows", self.limits.rows)

    # -- writes -------------------------------------------------------------------------

    async def create(self, hero: HeroIn) -> HeroRecord:
        return (await self.create_many([hero]))[0]

    async def create_many(self, heroes: Sequence[HeroIn]) -> list[HeroRecord]:
        """Insert every hero in one transaction (all or nothing), then write them through."""
        records = await self.store.create_many(heroes)
        await self._write_through(
            [(hero_key(r.id), Entry(r.version, r.to_json()), self.tuning.ttl) for r in records],
            {ALL_LISTS, *(xp_generation_key(r.xp) for r in records)},
        )
        return records

    async def bulk_load(
        self, rows: Iterable[tuple[Row, str]], *, replace: bool, keep: Callable[[], bool]
    ) -> int:
        """Load rows in bulk, then forget everything cached.

        Loaded rows are born with a version from the clock (``twotier.versions``), above
        the versions of the rows they replace, so no fill of an older row can win over
        them afterwards.
        """
        loaded = await self.store.bulk_load(rows, replace=replace, keep=keep)
        self._flights = SingleFlight()
        if await self._cache_usable():
            try:
                await self.cache.clear()
            except CacheUnavailable as error:
                self._cache_failed(error, "load")
                self._pending_overflow = True
        else:
            self._pending_overflow = True
        return loaded

    async def update(self, hero_id: int, changes: Mapping[str, Any]) -> HeroRecord | None:
        """Set ``changes`` on the row (PUT sends every field, PATCH some); None if absent."""
        result = await self.store.update(hero_id, changes)
        if result is None:
            return None
        before, after = result
        await self._write_through(
            [(hero_key(hero_id), Entry(after.version, after.to_json()), self.tuning.ttl)],
            {ALL_LISTS, xp_generation_key(before.xp), xp_generation_key(after.xp)},
        )
        return after

    async def delete(self, hero_id: int) -> int | None:
        """Delete the row; return the version of its tombstone, or None if it was absent."""
        before = await self.store.delete(hero_id)
        if before is None:
            return None
        # The tombstone is newer than any fill that read the row before it was deleted.
        await self._write_through(
            [(hero_key(hero_id), Entry(before.version + 1, b""), self.tuning.negative_ttl)],
            {ALL_LISTS, xp_generation_key(before.xp)},
        )
        return before.version + 1

    async def _write_through(
        self, items: Sequence[tuple[str, Entry, float]], generation_keys: set[str]
    ) -> None:
        """After a commit: store the new values and move the generations the write touched."""
        keys = [key for key, _, _ in items]
        for key in keys:
            self._flights.forget(key)
        if await self._cache_usable():
            try:
                await self.cache.put_many_if_newer(
                    [(key, entry, self._jittered(ttl)) for key, entry, ttl in items]
                )
                await self.cache.set_generations(
                    {g: _new_generation() for g in generation_keys}, self._generation_ttl
                )
                await self.cache.announce([*keys, *generation_keys])
            except CacheUnavailable as error:
                self._cache_failed(error, "write")
            else:
                self.breaker.succeeded()
                return
        self._remember(keys, generation_keys)

    # -- cache faults -------------------------------------------------------------------

    def _remember(self, keys: Iterable[str], generation_keys: set[str]) -> None:
        """A committed write the cache did not see: invalidate its keys before trusting it."""
        self._pending_keys.update(keys)
        self._pending_generations |= generation_keys
        if len(self._pending_keys) + len(self._pending_generations) > MAX_PENDING:
            self._pending_overflow = True
            self._pending_keys.clear()
            self._pending_generations.clear()

    async def _cache_usable(self) -> bool:
        if not self.breaker.allows():
            return False
        if self._pending_keys or self._pending_generations or self._pending_overflow:
            return await self._apply_pending()
        return True

    async def _apply_pending(self) -> bool:
        keys, generations = list(self._pending_keys), list(self._pending_generations)
        try:
            if self._pending_overflow:
                await self.cache.clear()
            else:
                await self.cache.delete(keys)
                await self.cache.set_generations(
                    {g: _new_generation() for g in generations}, self._generation_ttl
                )
                await self.cache.announce([*keys, *generations])
        except CacheUnavailable as error:
            self._cache_failed(error, "recover")
            return False
        self._pending_keys.difference_update(keys)
        self._pending_generations.difference_update(generations)
        self._pending_overflow = False
        self.breaker.succeeded()
        return True

    async def _try_cache(self, call: Awaitable[T], operation: str) -> None:
        """A best-effort cache write (a fill): failing it costs nothing but a later miss."""
        try:
            await call
        except CacheUnavailable as error:
            self._cache_failed(error, operation)

    def _cache_failed(self, error: CacheUnavailable, operation: str) -> None:
        CACHE_ERRORS.labels(operation).inc()
        log.warning("cache call failed, serving from the database: %s", error)
        self.breaker.failed()

    # -- tuning and health --------------------------------------------------------------

    def _jittered(self, ttl: float) -> float:
        """Spread expiries so that entries filled together do not all miss together."""
        return ttl * (1.0 - self.tuning.jitter * random.random())

    @property
    def _generation_ttl(self) -> float:
        # A generation must outlive the entries filed under it (if it does not, they miss).
        return 2 * self.tuning.ttl

    async def readiness(self) -> dict[str, str]:
        """Each tier's state: "ok", or what is wrong with it."""
        status: dict[str, str] = {}
        for name, ping, errors in (
            ("database", self.store.ping, (StoreUnavailable,)),
            ("cache", self.cache.ping, (CacheUnavailable,)),
        ):
            try:
                await ping()
                status[name] = "ok"
            except errors as error:
                status[name] = str(error)
        return status

    async def prepare(self) -> None:
        """Create the schema if it is missing (idempotent; every process may call it), and
        show this policy's live state on /metrics."""
        await self.store.init_schema()
        LIVE_STATE.watch(self.gauges)

    def gauges(self) -> GaugeReadings:
        """The live state an operator watches: pool, breaker, backlog, in-process caches."""
        state = self.breaker.state
        readings: dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]] = {
            "twotier_circuit_breaker_state": (
                "The cache circuit breaker: 1 for its current state.",
                {(("state", s.value),): float(s is state) for s in BreakerState},
            ),
            "twotier_cache_pending_invalidations": (
                "Committed writes the cache has not seen yet (applied when it is back).",
                {(): float(len(self._pending_keys) + len(self._pending_generations))},
            ),
        }
        pool = self.store.pool_usage()
        if pool:
            readings["twotier_database_pool_connections"] = (
                "Database connections of this process, by state.",
                {(("state", name),): float(count) for name, count in pool.items()},
            )
        for name, value in self.cache.gauges().items():
            held = "Bytes (estimated)" if name.endswith("_bytes") else "Entries"
            readings[f"twotier_{name}"] = (f"{held} held in this process.", {(): value})
        return readings

    async def close(self) -> None:
        LIVE_STATE.forget(self.gauges)
        await self.cache.close()
        await self.store.close()


def _one_more(query: HeroQuery) -> HeroQuery:
    return HeroQuery(query.filters, query.after, query.limit + 1)
