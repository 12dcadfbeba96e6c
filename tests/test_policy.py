"""The caching policy over real tiers: every rule of ARCHITECTURE.md, shown one by one."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tests.broken import UnversionedCache
from tests.conftest import database_url, make_cache
from twotier.cache.base import Cache, CacheUnavailable
from twotier.heroes import HeroIn, HeroRecord
from twotier.policy import CachePolicy, Outcome, Tuning, hero_key
from twotier.store.base import HeroQuery
from twotier.store.sql import SQLStore


class InstrumentedStore:
    """The real store, counting reads and able to hold a read after the database answered.

    Holding a read there is how a test makes a cache fill slow on purpose.
    """

    def __init__(self, inner: SQLStore) -> None:
        self.inner = inner
        self.gets = 0
        self.finds = 0
        self.read_done = asyncio.Event()
        self.release: asyncio.Event | None = None

    async def _hold(self) -> None:
        self.read_done.set()
        if self.release is not None:
            await self.release.wait()

    async def get(self, hero_id: int) -> HeroRecord | None:
        self.gets += 1
        record = await self.inner.get(hero_id)
        await self._hold()
        return record

    async def find(self, query: HeroQuery) -> list[HeroRecord]:
        self.finds += 1
        records = await self.inner.find(query)
        await self._hold()
        return records

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def hero(xp: int = 5, name: str = "Ada") -> HeroIn:
    return HeroIn(name=name, hero="Captain Ada", power="math", xp=xp, color="blue")


def body(record: HeroRecord) -> bytes:
    return record.to_json()


@pytest.fixture
async def store(sqlite_store: SQLStore) -> InstrumentedStore:
    return InstrumentedStore(sqlite_store)


@pytest.fixture
async def policy(store: InstrumentedStore, cache: Cache) -> CachePolicy:
    return CachePolicy(store, cache, Tuning(ttl=60, jitter=0.1, negative_ttl=5))


async def test_read_misses_then_hits_with_the_same_bytes(
    policy: CachePolicy, store: InstrumentedStore
) -> None:
    record = await store.inner.create(hero())
    first = await policy.read(record.id)
    second = await policy.read(record.id)
    assert (first.outcome, second.outcome) == (Outcome.MISS, Outcome.HIT)
    assert first.body == second.body == body(record)
    assert store.gets == 1


async def test_no_cache_reads_bypass_the_cache(
    policy: CachePolicy, store: InstrumentedStore, cache: Cache
) -> None:
    record = await store.inner.create(hero())
    served = await policy.read(record.id, use_cache=False)
    assert (served.outcome, served.body) == (Outcome.BYPASS, body(record))
    assert await cache.get(hero_key(record.id)) is None  # a bypass does not fill
    assert (await policy.find(HeroQuery(), use_cache=False)).outcome == Outcome.BYPASS


async def test_writes_go_through_to_the_cache(
    policy: CachePolicy, store: InstrumentedStore
) -> None:
    created = await policy.create(hero())
    served = await policy.read(created.id)
    assert (served.outcome, served.body) == (Outcome.HIT, body(created))  # no miss at all

    updated = await policy.update(created.id, {"name": "Bea"})
    assert updated is not None
    assert updated.version == created.version + 1
    served = await policy.read(created.id)
    assert (served.outcome, served.body) == (Outcome.HIT, body(updated))
    assert store.gets == 0


async def test_delete_leaves_a_tombstone(policy: CachePolicy, store: InstrumentedStore) -> None:
    created = await policy.create(hero())
    await policy.read(created.id)
    assert await policy.delete(created.id)
    served = await policy.read(created.id)
    assert (served.outcome, served.body) == (Outcome.HIT, None)
    assert store.gets == 0
    assert not await policy.delete(created.id)


async def test_absent_rows_are_cached_briefly(store: InstrumentedStore, cache: Cache) -> None:
    policy = CachePolicy(store, cache, Tuning(ttl=60, negative_ttl=0.2))
    assert (await policy.read(999)).outcome == Outcome.MISS
    assert await policy.read(999) == (await policy.read(999))
    assert (await policy.read(999)).outcome == Outcome.HIT
    assert store.gets == 1
    await asyncio.sleep(0.4)
    assert (await policy.read(999)).outcome == Outcome.MISS  # the negative TTL ended


async def test_a_created_row_replaces_its_negative_entry(
    policy: CachePolicy, store: InstrumentedStore
) -> None:
    first = await store.inner.create(hero())
    next_id = first.id + 1
    assert (await policy.read(next_id)).body is None  # cached as absent
    created = await policy.create(hero(name="New"))
    assert created.id == next_id
    served = await policy.read(next_id)
    assert (served.outcome, served.body) == (Outcome.HIT, body(created))


async def test_concurrent_misses_query_the_database_once(
    policy: CachePolicy, store: InstrumentedStore
) -> None:
    record = await store.inner.create(hero())
    store.release = asyncio.Event()
    readers = [asyncio.create_task(policy.read(record.id)) for _ in range(50)]
    await store.read_done.wait()
    store.release.set()
    results = await asyncio.gather(*readers)
    assert store.gets == 1
    assert {r.body for r in results} == {body(record)}
    assert {r.outcome for r in results} == {Outcome.MISS}


async def test_ttls_have_jitter(store: InstrumentedStore) -> None:
    cache = await make_cache("redis")
    try:
        policy = CachePolicy(store, cache, Tuning(ttl=100, jitter=0.5))
        made = await store.inner.create_many([hero(name=f"j{i}") for i in range(30)])
        for record in made:
            await policy.read(record.id)
        redis = cache._redis  # type: ignore[attr-defined]
        ttls = [await redis.pttl(cache._key(hero_key(r.id))) for r in made]  # type: ignore[attr-defined]
        assert all(50_000 - 1000 <= ttl <= 100_000 for ttl in ttls)
        assert len(set(ttls)) > 10  # spread out, not one expiry for all
    finally:
        await cache.clear()
        await cache.close()


async def _fill_after_write(policy: CachePolicy, store: InstrumentedStore) -> HeroRecord:
    """A reader reads v1 from the database and stalls; a write commits v2 and writes it
    through; then the stalled reader fills. Returns the row as the database has it."""
    record = await store.inner.create(hero())
    store.release = asyncio.Event()
    reader = asyncio.create_task(policy.read(record.id))
    await store.read_done.wait()  # the reader holds v1, not yet in the cache
    updated = await policy.update(record.id, {"name": "Newer"})
    assert updated is not None
    store.release.set()
    stale = await reader
    assert stale.body == body(record)  # it read before the write: that answer is fine
    store.release = None
    return updated


async def test_a_slow_fill_never_overwrites_a_newer_write(
    policy: CachePolicy, store: InstrumentedStore
) -> None:
    updated = await _fill_after_write(policy, store)
    served = await policy.read(updated.id)
    assert (served.outcome, served.body) == (Outcome.HIT, body(updated))


async def test_without_versions_the_same_race_leaves_stale_data(
    store: InstrumentedStore, cache: Cache
) -> None:
    # The control experiment: the race above is real, and only the version check stops it.
    broken = CachePolicy(store, UnversionedCache(cache), Tuning(ttl=60))
    updated = await _fill_after_write(broken, store)
    served = await broken.read(updated.id)
    assert served.outcome == Outcome.HIT
    assert orjson.loads(served.body or b"")["name"] == "Ada"  # stale until the TTL ends


async def test_fill_after_write_race_on_mariadb_and_redis(tmp_path: object) -> None:
    sql_store = SQLStore(database_url("mysql", tmp_path))
    await sql_store.init_schema()
    cache = await make_cache("redis")
    try:
        store = InstrumentedStore(sql_store)
        policy = CachePolicy(store, cache, Tuning(ttl=60))
        updated = await _fill_after_write(policy, store)
        served = await policy.read(updated.id)
        assert (served.outcome, served.body) == (Outcome.HIT, body(updated))
    finally:
        await sql_store.drop_schema()
        await sql_store.close()
        await cache.clear()
        await cache.close()


def _ids(served_body: bytes | None) -> list[int]:
    return [item["id"] for item in orjson.loads(served_body or b"")["items"]]


async def test_xp_lookups_are_cached_per_value_and_invalidated_by_writes(
    policy: CachePolicy, store: InstrumentedStore
) -> None:
    a, b, c = await store.inner.create_many([hero(xp=5), hero(xp=5), hero(xp=6)])
    by5, by6 = HeroQuery((("xp", 5),)), HeroQuery((("xp", 6),))
    assert (await policy.find(by5)).outcome == Outcome.MISS
    assert (await policy.find(by6)).outcome == Outcome.MISS
    served = await policy.find(by5)
    assert (served.outcome, _ids(served.body)) == (Outcome.HIT, [a.id, b.id])

    await policy.update(b.id, {"xp": 6})  # touches xp 5 (old) and xp 6 (new)
    served5, served6 = await policy.find(by5), await policy.find(by6)
    assert (served5.outcome, _ids(served5.body)) == (Outcome.MISS, [a.id])
    assert (served6.outcome, _ids(served6.body)) == (Outcome.MISS, [b.id, c.id])

    await policy.update(a.id, {"name": "Other"})  # xp 5 again, xp 6 untouched
    assert (await policy.find(by5)).outcome == Outcome.MISS
    assert (await policy.find(by6)).outcome == Outcome.HIT

    await policy.create(hero(xp=6))
    assert (await policy.find(by6)).outcome == Outcome.MISS
    await policy.delete(c.id)
    served6 = await policy.find(by6)
    assert served6.outcome == Outcome.MISS
    assert c.id not in _ids(served6.body)


async def test_other_lists_are_invalidated_by_every_write(
    policy: CachePolicy, store: InstrumentedStore
) -> None:
    await store.inner.create_many([hero(name=f"l{i}") for i in range(5)])
    page = HeroQuery(limit=3)
    first = await policy.find(page)
    assert first.outcome == Outcome.MISS
    assert orjson.loads(first.body or b"")["next_after"] == _ids(first.body)[-1]
    assert (await policy.find(page)).outcome == Outcome.HIT
    created = await policy.create(hero(xp=77))
    assert (await policy.find(page)).outcome == Outcome.MISS
    last = await policy.find(HeroQuery(after=created.id - 1, limit=3))
    assert _ids(last.body) == [created.id]
    assert orjson.loads(last.body or b"")["next_after"] is None


async def test_a_slow_list_fill_never_overwrites_a_newer_write(
    policy: CachePolicy, store: InstrumentedStore
) -> None:
    a = await store.inner.create(hero(xp=5))
    by5 = HeroQuery((("xp", 5),))
    store.release = asyncio.Event()
    reader = asyncio.create_task(policy.find(by5))
    await store.read_done.wait()
    await policy.update(a.id, {"xp": 9})
    store.release.set()
    assert _ids((await reader).body) == [a.id]  # read before the write
    store.release = None
    served = await policy.find(by5)
    assert (served.outcome, _ids(served.body)) == (Outcome.MISS, [])


async def test_a_cache_outage_degrades_to_the_database(store: InstrumentedStore) -> None:
    from twotier.cache.redis import RedisCache

    dead = RedisCache("redis://127.0.0.1:1/0", namespace="dead", timeout=0.2)
    policy = CachePolicy(store, dead, Tuning(ttl=60))
    record = await store.inner.create(hero())
    for _ in range(10):
        served = await policy.read(record.id)
        assert (served.outcome, served.body) == (Outcome.BYPASS, body(record))
    updated = await policy.update(record.id, {"name": "Still"})  # the database is the truth
    assert updated is not None
    assert (await policy.read(record.id)).body == body(updated)
    assert policy.breaker.state != "closed"
    assert (await policy.readiness())["cache"].startswith("cache unavailable")
    await dead.close()


async def test_writes_missed_by_the_cache_are_applied_before_it_is_trusted_again(
    store: InstrumentedStore,
) -> None:
    cache = await make_cache("redis")
    try:
        policy = CachePolicy(store, cache, Tuning(ttl=60))
        record = await policy.create(hero())
        await policy.read(record.id)  # cached at v1
        # The write-through fails (as when the cache times out); the commit stands.

        async def fail(*_args: object, **_kwargs: object) -> bool:
            raise CacheUnavailable("simulated timeout")

        original = cache.put_if_newer
        cache.put_if_newer = fail  # type: ignore[method-assign]
        updated = await policy.update(record.id, {"name": "Missed"})
        cache.put_if_newer = original  # type: ignore[method-assign]
        assert updated is not None
        policy.breaker.succeeded()  # the cache is back
        served = await policy.read(record.id)
        assert served.body == body(updated)  # the stale v1 entry was invalidated first
    finally:
        await cache.clear()
        await cache.close()


async def test_readiness_reports_each_tier(policy: CachePolicy) -> None:
    assert await policy.readiness() == {"database": "ok", "cache": "ok"}


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
    policy = CachePolicy(store, await make_cache("memory"), Tuning(ttl=60))
    try:
        await policy.create(hero(name="first"))
        old = await policy.create(hero(name="old"))
        for number in range(5):  # a tombstone well above the row's birth
            await policy.update(old.id, {"name": f"old{number}"})
        await policy.delete(old.id)
        new = await policy.create(hero(name="new"))
        assert new.id == old.id  # the id came back
        served = await policy.read(new.id)
        assert (served.outcome, served.body) == (Outcome.HIT, body(new))
        patched = await policy.update(new.id, {"name": "newer"})
        assert patched is not None
        assert (await policy.read(new.id)).body == body(patched)
    finally:
        await policy.close()
