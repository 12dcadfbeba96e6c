"""Never stale, never lost: concurrent clients over HTTP, a real server, MariaDB and Redis.

Bounded for CI (a few thousand operations); ``make soak`` runs the same with
TWOTIER_SOAK_OPERATIONS (and TWOTIER_SOAK_CLIENTS) set much higher.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from tests.broken import UnversionedCache
from tests.conftest import SERVER_URLS, database_url, redis_namespace, require
from tests.consistency.checker import XPS, History, Row, Workload, freeze, run
from twotier.bench.target import Target
from twotier.cache.base import Cache
from twotier.cache.redis import RedisCache
from twotier.heroes import HeroRecord
from twotier.policy import (
    CachePolicy,
    Tuning,
    hero_key,
    list_generation_key,
    list_key,
    xp_generation_key,
    xp_key,
)
from twotier.store.base import HeroQuery
from twotier.store.sql import SQLStore

OPERATIONS = int(os.environ.get("TWOTIER_SOAK_OPERATIONS", "2500"))
CLIENTS = int(os.environ.get("TWOTIER_SOAK_CLIENTS", "16"))
# Short TTLs: entries expire all the time, so fills race with writes all the time.
FAST_EXPIRY = {"TWOTIER_CACHE_TTL": "0.3", "TWOTIER_CACHE_NEGATIVE_TTL": "0.2"}


async def database_rows(store: SQLStore, keys: list[int]) -> dict[int, Row | None]:
    found = await store.get_many(keys)
    return {key: freeze(found[key].public()) if key in found else None for key in keys}


async def cache_disagreements(
    cache: Cache, store: SQLStore, database: dict[int, Row | None]
) -> list[str]:
    """Every entry the cache holds must say what the database says."""
    problems = []
    for key, row in database.items():
        entry = await cache.get(hero_key(key))
        if entry is None:
            continue
        cached = None if entry.absent else freeze(orjson.loads(entry.body))
        if cached != row:
            problems.append(f"cache holds hero {key} as {cached}, the database as {row}")
    for xp in XPS:
        truth = [r.public() for r in (await store.by_xp([xp]))[xp]]
        query = HeroQuery((("xp", xp),), 0, 1000)
        pairs = [(xp_key(xp), xp_generation_key(xp)), (list_key(query), list_generation_key(query))]
        for (entry, generation), (name, _) in zip(
            await cache.get_with_generations(pairs, [0, 0], 60), pairs, strict=True
        ):
            if entry is None or entry.version != generation:
                continue  # stale by generation: never served
            body = orjson.loads(entry.body)
            items = body if isinstance(body, list) else body["items"]
            if items != truth:
                problems.append(f"cache entry {name} disagrees with the database")
    return problems


def judge(history: History, database: dict[int, Row | None]) -> list[str]:
    return history.errors + history.stale_reads() + history.lost_writes(database)


@pytest.fixture
async def mariadb(tmp_path: object) -> AsyncIterator[SQLStore]:
    store = SQLStore(database_url("mysql", tmp_path))
    await store.init_schema()
    await store.drop_schema()
    await store.init_schema()
    try:
        yield store
    finally:
        await store.drop_schema()
        await store.close()


@pytest.mark.parametrize(
    ("workers", "near_cache_ttl"),
    [(2, "0"), (1, "10")],
    ids=["2-workers-redis", "1-worker-near-cache"],
)
async def test_concurrent_clients_never_see_stale_data_nor_lose_writes(
    mariadb: SQLStore, workers: int, near_cache_ttl: str
) -> None:
    require("redis")
    namespace = redis_namespace()
    env = {
        "TWOTIER_DATABASE_URL": mariadb.url.render_as_string(hide_password=False),
        "TWOTIER_CACHE_URL": SERVER_URLS["redis"],
        "TWOTIER_CACHE_NAMESPACE": namespace,
        "TWOTIER_NEAR_CACHE_TTL": near_cache_ttl,
        **FAST_EXPIRY,
    }
    with Target(workers=workers, env=env) as target:
        async with httpx.AsyncClient(
            base_url=target.url, headers=target.headers, timeout=30
        ) as client:
            history = await run(client, Workload(clients=CLIENTS, operations=OPERATIONS))
        keys = list(history.writes)
        database = await database_rows(mariadb, keys)
        cache = RedisCache(SERVER_URLS["redis"], namespace=namespace)
        try:
            problems = judge(history, database) + await cache_disagreements(
                cache, mariadb, database
            )
        finally:
            await cache.close()
    assert sum(len(w) for w in history.writes.values()) > OPERATIONS // 5
    assert len(history.reads) > OPERATIONS // 2
    assert not problems, "\n".join(problems[:20])


class SlowFills:
    """The real store, with reads that take a while to come back (a loaded database, a
    pause): the window in which a fill can race a write."""

    def __init__(self, inner: SQLStore) -> None:
        self.inner = inner
        self._rng = random.Random(7)

    async def _pause(self) -> None:
        await asyncio.sleep(self._rng.uniform(0, 0.05))

    async def get(self, hero_id: int) -> HeroRecord | None:
        record = await self.inner.get(hero_id)
        await self._pause()
        return record

    async def find(self, query: HeroQuery) -> list[HeroRecord]:
        records = await self.inner.find(query)
        await self._pause()
        return records

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("versions", [True, False], ids=["versioned", "unversioned"])
async def test_the_checker_catches_a_policy_without_versions(
    mariadb: SQLStore, versions: bool
) -> None:
    from twotier.api.app import create_app
    from twotier.config import Settings

    require("redis")
    redis = RedisCache(SERVER_URLS["redis"], namespace=redis_namespace(), timeout=5)
    cache = redis if versions else UnversionedCache(redis)
    tuning = Tuning(ttl=0.1, negative_ttl=0.1)  # entries expire all the time: many fills
    policy = CachePolicy(SlowFills(mariadb), cache, tuning)
    app = create_app(Settings(require_key_for_writes=False), policy=policy)
    transport = httpx.ASGITransport(app=app)
    # A race is a matter of chance: the broken policy gets up to three bounded rounds to
    # show itself (it does in the first, almost always); the correct one gets the same.
    problems: list[str] = []
    try:
        for _ in range(3):
            async with httpx.AsyncClient(transport=transport, base_url="http://checker") as client:
                history = await run(client, Workload(clients=16, operations=OPERATIONS, hot_keys=6))
            database = await database_rows(mariadb, list(history.writes))
            problems += judge(history, database)
            problems += await cache_disagreements(redis, mariadb, database)
            if problems:
                break
    finally:
        await redis.clear()
        await redis.close()
    if versions:
        assert not problems, "\n".join(problems[:20])
    else:
        assert problems, "the checker did not notice a cache that ignores versions"
        print(f"{len(problems)} problems found, e.g. {problems[0]}")
