"""The caching policy over real tiers: every rule of ARCHITECTURE.md, shown one by one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from tests.broken import UnversionedCache
from tests.conftest import database_url, make_cache
from tests.heroes import hero as new_hero
from twotier.cache.base import Cache, Entry
from twotier.cache.resilient import ResilientCache
from twotier.errors import CacheUnavailable
from twotier.policy import Outcome, ResourcePolicy, Tuning
from twotier.resources import Key, Record
from twotier.service import Service
from twotier.store.base import Query
from twotier.store.sql import SQLStore
from twotier.store.sql_rows import SQLRows


class InstrumentedRows:
    """The real rows, counting reads and able to hold a read after the database answered.

    Holding a read there is how a test makes a cache fill slow on purpose.
    """

    def __init__(self, inner: SQLRows) -> None:
        self.inner = inner
        self.resource = inner.resource
        self.gets = 0
        self.finds = 0
        self.read_done = asyncio.Event()
        self.release: asyncio.Event | None = None

    async def _hold(self) -> None:
        self.read_done.set()
        if self.release is not None:
            await self.release.wait()

    async def get(self, key: Key) -> Record | None:
        self.gets += 1
        record = await self.inner.get(key)
        await self._hold()
        return record

    async def get_many(self, keys: Sequence[Key]) -> dict[Key, Record]:
        self.gets += 1
        records = await self.inner.get_many(keys)
        await self._hold()
        return records

    async def find(self, query: Query) -> list[Record]:
        self.finds += 1
        records = await self.inner.find(query)
        await self._hold()
        return records

    async def create(self, row: dict[str, Any]) -> Record:
        return (await self.inner.create_many([row]))[0]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def hero(xp: int = 5, name: str = "Ada") -> dict[str, Any]:
    return new_hero(name=name, xp=xp)


def body(record: Record) -> bytes:
    return record.to_json()


def make_policy(rows: Any, cache: Cache, tuning: Tuning) -> ResourcePolicy:
    return ResourcePolicy(rows, ResilientCache(cache, generation_ttl=tuning.generation_ttl), tuning)


@pytest.fixture
async def store(sqlite_store: SQLStore) -> InstrumentedRows:
    return InstrumentedRows(sqlite_store.rows("heroes"))


@pytest.fixture
async def policy(store: InstrumentedRows, cache: Cache) -> ResourcePolicy:
    return make_policy(store, cache, Tuning(ttl=60, jitter=0.1, negative_ttl=5))


async def test_read_misses_then_hits_with_the_same_bytes(
    policy: ResourcePolicy, store: InstrumentedRows
) -> None:
    record = await store.create(hero())
    first = await policy.read(record.key)
    second = await policy.read(record.key)
    assert (first.outcome, second.outcome) == (Outcome.MISS, Outcome.HIT)
    assert first.body == second.body == body(record)
    assert store.gets == 1


async def test_no_cache_reads_bypass_the_cache(
    policy: ResourcePolicy, store: InstrumentedRows, cache: Cache
) -> None:
    record = await store.create(hero())
    served = await policy.read(record.key, use_cache=False)
    assert (served.outcome, served.body) == (Outcome.BYPASS, body(record))
    assert await cache.get(policy.keys.row(record.key)) is None  # a bypass does not fill
    assert (await policy.find(Query(), use_cache=False)).outcome == Outcome.BYPASS


async def test_writes_go_through_to_the_cache(
    policy: ResourcePolicy, store: InstrumentedRows
) -> None:
    created = await policy.create(hero())
    served = await policy.read(created.key)
    assert (served.outcome, served.body) == (Outcome.HIT, body(created))  # no miss at all

    updated = await policy.update(created.key, {"name": "Bea"})
    assert updated is not None
    assert updated.version == created.version + 1
    served = await policy.read(created.key)
    assert (served.outcome, served.body) == (Outcome.HIT, body(updated))
    assert store.gets == 0


async def test_delete_leaves_a_tombstone(policy: ResourcePolicy, store: InstrumentedRows) -> None:
    created = await policy.create(hero())
    await policy.read(created.key)
    assert await policy.delete(created.key)
    served = await policy.read(created.key)
    assert (served.outcome, served.body) == (Outcome.HIT, None)
    assert store.gets == 0
    assert not await policy.delete(created.key)


async def test_absent_rows_are_cached_briefly(store: InstrumentedRows, cache: Cache) -> None:
    policy = make_policy(store, cache, Tuning(ttl=60, negative_ttl=0.2))
    assert (await policy.read(999)).outcome == Outcome.MISS
    assert await policy.read(999) == (await policy.read(999))
    assert (await policy.read(999)).outcome == Outcome.HIT
    assert store.gets == 1
    await asyncio.sleep(0.4)
    assert (await policy.read(999)).outcome == Outcome.MISS  # the negative TTL ended


async def test_a_created_row_replaces_its_negative_entry(
    policy: ResourcePolicy, store: InstrumentedRows
) -> None:
    first = await store.create(hero())
    next_id = first["id"] + 1
    assert (await policy.read(next_id)).body is None  # cached as absent
    created = await policy.create(hero(name="New"))
    assert created.key == next_id
    served = await policy.read(next_id)
    assert (served.outcome, served.body) == (Outcome.HIT, body(created))


async def test_concurrent_misses_query_the_database_once(
    policy: ResourcePolicy, store: InstrumentedRows
) -> None:
    record = await store.create(hero())
    store.release = asyncio.Event()
    readers = [asyncio.create_task(policy.read(record.key)) for _ in range(50)]
    await store.read_done.wait()
    store.release.set()
    results = await asyncio.gather(*readers)
    assert store.gets == 1
    assert {r.body for r in results} == {body(record)}
    assert {r.outcome for r in results} == {Outcome.MISS}


async def test_misses_of_one_turn_of_the_loop_are_filled_together(
    policy: ResourcePolicy, store: InstrumentedRows
) -> None:
    """Different keys missing at once: one database read for all of them, each reader
    its own row (or its absence)."""
    records = [await store.create(hero(xp=n)) for n in range(1, 21)]
    keys = [r.key for r in records] + [10_000]
    results = await asyncio.gather(*(policy.read(key) for key in keys))
    assert store.gets == 1
    assert [r.body for r in results] == [*(body(r) for r in records), None]
    assert {r.outcome for r in results} == {Outcome.MISS}
    again = await asyncio.gather(*(policy.read(key) for key in keys))
    assert {r.outcome for r in again} == {Outcome.HIT}


async def test_ttls_have_jitter(store: InstrumentedRows) -> None:
    cache = await make_cache("redis")
    try:
        policy = make_policy(store, cache, Tuning(ttl=100, jitter=0.5))
        made = await store.inner.create_many([hero(name=f"j{i}") for i in range(30)])
        for record in made:
            await policy.read(record.key)
        redis = cache._redis  # type: ignore[attr-defined]
        ttls = [await redis.pttl(cache._key(policy.keys.row(r.key))) for r in made]  # type: ignore[attr-defined]
        assert all(50_000 - 1000 <= ttl <= 100_000 for ttl in ttls)
        assert len(set(ttls)) > 10  # spread out, not one expiry for all
    finally:
        await cache.clear()
        await cache.close()


async def _fill_after_write(policy: ResourcePolicy, store: InstrumentedRows) -> Record:
    """A reader reads v1 from the database and stalls; a write commits v2 and writes it
    through; then the stalled reader fills. Returns the row as the database has it."""
    record = await store.create(hero())
    store.release = asyncio.Event()
    reader = asyncio.create_task(policy.read(record.key))
    await store.read_done.wait()  # the reader holds v1, not yet in the cache
    updated = await policy.update(record.key, {"name": "Newer"})
    assert updated is not None
    store.release.set()
    stale = await reader
    assert stale.body == body(record)  # it read before the write: that answer is fine
    store.release = None
    return updated


async def test_a_slow_fill_never_overwrites_a_newer_write(
    policy: ResourcePolicy, store: InstrumentedRows
) -> None:
    updated = await _fill_after_write(policy, store)
    served = await policy.read(updated.key)
    assert (served.outcome, served.body) == (Outcome.HIT, body(updated))


async def test_a_fill_slower_than_the_newer_entry_lives_is_not_stored(
    store: InstrumentedRows, cache: Cache
) -> None:
    """The version check needs the newer entry to compare with: a fill that stalls until
    the write's entry has expired would otherwise bring the old row back."""
    policy = make_policy(store, cache, Tuning(ttl=0.2, negative_ttl=0.2, jitter=0.0))
    record = await store.create(hero())
    store.release = asyncio.Event()
    reader = asyncio.create_task(policy.read(record.key))
    await store.read_done.wait()  # the reader holds v1
    updated = await policy.update(record.key, {"name": "Newer"})
    assert updated is not None
    await asyncio.sleep(0.3)  # the write's entry expires
    store.release.set()
    assert (await reader).body == body(record)  # answered: it read before the write
    store.release = None
    served = await policy.read(updated.key)
    assert (served.outcome, served.body) == (Outcome.MISS, body(updated))


async def test_without_versions_the_same_race_leaves_stale_data(
    store: InstrumentedRows, cache: Cache
) -> None:
    # The control experiment: the race above is real, and only the version check stops it.
    broken = make_policy(store, UnversionedCache(cache), Tuning(ttl=60))
    updated = await _fill_after_write(broken, store)
    served = await broken.read(updated.key)
    assert served.outcome == Outcome.HIT
    assert orjson.loads(served.body or b"")["name"] == "Ada"  # stale until the TTL ends


async def test_fill_after_write_race_on_mariadb_and_redis(tmp_path: object) -> None:
    sql_store = SQLStore(database_url("mysql", tmp_path))
    await sql_store.init_schema()
    cache = await make_cache("redis")
    try:
        store = InstrumentedRows(sql_store.rows("heroes"))
        policy = make_policy(store, cache, Tuning(ttl=60))
        updated = await _fill_after_write(policy, store)
        served = await policy.read(updated.key)
        assert (served.outcome, served.body) == (Outcome.HIT, body(updated))
    finally:
        await sql_store.drop_schema()
        await sql_store.close()
        await cache.clear()
        await cache.close()


def _ids(served_body: bytes | None) -> list[int]:
    return [item["id"] for item in orjson.loads(served_body or b"")["items"]]


async def test_xp_lookups_are_cached_per_value_and_invalidated_by_writes(
    policy: ResourcePolicy, store: InstrumentedRows
) -> None:
    a, b, c = await store.inner.create_many([hero(xp=5), hero(xp=5), hero(xp=6)])
    by5, by6 = Query((("xp", 5),)), Query((("xp", 6),))
    assert (await policy.find(by5)).outcome == Outcome.MISS
    assert (await policy.find(by6)).outcome == Outcome.MISS
    served = await policy.find(by5)
    assert (served.outcome, _ids(served.body)) == (Outcome.HIT, [a.key, b.key])

    await policy.update(b.key, {"xp": 6})  # touches xp 5 (old) and xp 6 (new)
    served5, served6 = await policy.find(by5), await policy.find(by6)
    assert (served5.outcome, _ids(served5.body)) == (Outcome.MISS, [a.key])
    assert (served6.outcome, _ids(served6.body)) == (Outcome.MISS, [b.key, c.key])

    await policy.update(a.key, {"name": "Other"})  # xp 5 again, xp 6 untouched
    assert (await policy.find(by5)).outcome == Outcome.MISS
    assert (await policy.find(by6)).outcome == Outcome.HIT

    await policy.create(hero(xp=6))
    assert (await policy.find(by6)).outcome == Outcome.MISS
    await policy.delete(c.key)
    served6 = await policy.find(by6)
    assert served6.outcome == Outcome.MISS
    assert c.key not in _ids(served6.body)


async def test_other_lists_are_invalidated_by_every_write(
    policy: ResourcePolicy, store: InstrumentedRows
) -> None:
    await store.inner.create_many([hero(name=f"l{i}") for i in range(5)])
    page = Query(limit=3)
    first = await policy.find(page)
    assert first.outcome == Outcome.MISS
    assert orjson.loads(first.body or b"")["next_after"] == _ids(first.body)[-1]
    assert (await policy.find(page)).outcome == Outcome.HIT
    created = await policy.create(hero(xp=77))
    assert (await policy.find(page)).outcome == Outcome.MISS
    last = await policy.find(Query(after=created["id"] - 1, limit=3))
    assert _ids(last.body) == [created.key]
    assert orjson.loads(last.body or b"")["next_after"] is None


async def test_a_slow_list_fill_never_overwrites_a_newer_write(
    policy: ResourcePolicy, store: InstrumentedRows
) -> None:
    a = await store.create(hero(xp=5))
    by5 = Query((("xp", 5),))
    store.release = asyncio.Event()
    reader = asyncio.create_task(policy.find(by5))
    await store.read_done.wait()
    await policy.update(a.key, {"xp": 9})
    store.release.set()
    assert _ids((await reader).body) == [a.key]  # read before the write
    store.release = None
    served = await policy.find(by5)
    assert (served.outcome, _ids(served.body)) == (Outcome.MISS, [])


async def test_a_cache_outage_degrades_to_the_database(store: InstrumentedRows) -> None:
    from twotier.cache.redis import RedisCache

    dead = RedisCache("redis://127.0.0.1:1/0", namespace="dead", timeout=0.2)
    policy = make_policy(store, dead, Tuning(ttl=60))
    record = await store.create(hero())
    for _ in range(10):
        served = await policy.read(record.key)
        assert (served.outcome, served.body) == (Outcome.BYPASS, body(record))
    updated = await policy.update(record.key, {"name": "Still"})  # the database is the truth
    assert updated is not None
    assert (await policy.read(record.key)).body == body(updated)
    assert policy.cache.breaker.state != "closed"
    service = Service(store.inner._db, policy.cache, [store.resource])  # type: ignore[arg-type]
    assert (await service.readiness())["cache"].startswith("cache unavailable")
    await dead.close()


async def test_a_dead_cache_behind_resilient_cache_answers_as_a_cache_that_degrades() -> None:
    """Reads raise CacheUnavailable (the caller reads the database), fills answer "not
    stored", a write-through or a clear is remembered and raises, nothing is peeked; once
    the breaker opens, a read raises without a call to the cache."""
    from twotier.cache.redis import RedisCache
    from twotier.telemetry import CACHE_ERRORS

    def errors() -> float:
        return sum(
            sample.value
            for metric in CACHE_ERRORS.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )

    dead = RedisCache("redis://127.0.0.1:1/0", namespace="dead", timeout=0.2)
    resilient = ResilientCache(dead, generation_ttl=60)
    try:
        with pytest.raises(CacheUnavailable):
            await resilient.get("k")
        assert await resilient.put_if_newer("k", Entry(1, b"x"), 60) is False
        assert await resilient.put_many_if_newer([("k", Entry(1, b"x"), 60)]) == [False]
        assert not resilient.breaker.allows()  # three failures in a row
        counted = errors()
        for read in (
            resilient.get("k"),
            resilient.get_many(["k"]),
            resilient.get_with_generations([("{g}:e", "{g}")], [1], 60),
        ):
            with pytest.raises(CacheUnavailable):
                await read
        assert errors() == counted  # refused here, the cache not asked
        with pytest.raises(CacheUnavailable):
            await resilient.write([("k", Entry(2, b"y"), 60)], {"{g}": 5}, 60)
        assert resilient.pending == 2  # the entry and the generation, to make again
        assert resilient.peek("k") is None
        with pytest.raises(CacheUnavailable):
            await resilient.clear()
        assert resilient.pending == 0  # everything is forgotten instead, once it answers
        assert not resilient.closed
    finally:
        await resilient.close()


async def test_writes_missed_by_the_cache_are_applied_before_it_is_trusted_again(
    store: InstrumentedRows,
) -> None:
    cache = await make_cache("redis")
    try:
        policy = make_policy(store, cache, Tuning(ttl=60))
        record = await policy.create(hero())
        await policy.read(record.key)  # cached at v1
        # The write-through fails (as when the cache times out); the commit stands.

        async def fail(*_args: object, **_kwargs: object) -> bool:
            raise CacheUnavailable("simulated timeout")

        original = cache.write
        cache.write = fail  # type: ignore[method-assign,assignment]
        updated = await policy.update(record.key, {"name": "Missed"})
        cache.write = original  # type: ignore[method-assign]
        assert updated is not None
        policy.cache.breaker.succeeded()  # the cache is back
        served = await policy.read(record.key)
        assert served.body == body(updated)  # the stale v1 entry was invalidated first
    finally:
        await cache.clear()
        await cache.close()


async def test_readiness_reports_each_tier(policy: ResourcePolicy, sqlite_store: SQLStore) -> None:
    service = Service(sqlite_store, policy.cache, [policy.resource])
    assert await service.readiness() == {"database": "ok", "cache": "ok"}


async def test_a_created_row_never_loses_to_an_old_tombstone(tmp_path: object) -> None:
    # A table made before ids were protected (a plain SQLite rowid key) hands the highest
    # id out again after its row is deleted: the row created under it must be seen at once,
    # however new the deleted row's tombstone was.
    from sqlalchemy import text

    store = SQLStore(database_url("sqlite", tmp_path))
    async with store.engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE TABLE superheroes (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL, "
                "hero VARCHAR(20) NOT NULL, power VARCHAR(20) NOT NULL, xp INTEGER NOT NULL, "
                "color VARCHAR(20) NOT NULL, version BIGINT NOT NULL DEFAULT 1)"
            )
        )
    await store.init_schema()
    policy = make_policy(store.rows("heroes"), await make_cache("memory"), Tuning(ttl=60))
    try:
        await policy.create(hero(name="first"))
        old = await policy.create(hero(name="old"))
        for number in range(5):  # a tombstone well above the row's birth
            await policy.update(old.key, {"name": f"old{number}"})
        await policy.delete(old.key)
        new = await policy.create(hero(name="new"))
        assert new.key == old.key  # the id came back
        served = await policy.read(new.key)
        assert (served.outcome, served.body) == (Outcome.HIT, body(new))
        patched = await policy.update(new.key, {"name": "newer"})
        assert patched is not None
        assert (await policy.read(new.key)).body == body(patched)
    finally:
        await store.close()


async def test_on_a_cluster_a_write_through_is_tried_even_when_the_cache_is_distrusted(
    store: InstrumentedRows,
) -> None:
    """A Redis Cluster's shards fail alone: with this process's breaker open (another shard
    failed), a write still reaches the shard its row lives on, which the other processes
    read. On one Redis it is remembered instead (the breaker spares it the timeout)."""
    cache = await make_cache("cluster")
    try:
        for alone in (True, False):
            resilient = ResilientCache(cache, generation_ttl=60, shards_fail_alone=alone)
            policy = ResourcePolicy(store, resilient, Tuning(ttl=60))
            record = await policy.create(hero(name=f"c{alone}"))
            for _ in range(3):  # another shard timed out
                resilient.breaker.failed()
            assert not resilient.breaker.allows()
            updated = await policy.update(record.key, {"name": "seen"})
            assert updated is not None
            held = await cache.get(policy.keys.row(record.key))
            assert held is not None
            assert held.version == (updated.version if alone else record.version)
            # nothing left over, or the row, the lists' and its xp's generations, and the
            # nodes of its key's order (one a level)
            remembered = 3 + len(policy.keys.dropped_by(updated))
            assert resilient.pending == (0 if alone else remembered)
    finally:
        await cache.clear()
        await cache.close()
