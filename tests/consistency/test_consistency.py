"""Never stale, never lost: concurrent clients over HTTP, a real server, MariaDB (and
DynamoDB, on moto's server) and Redis.

Bounded for CI (a few thousand operations); ``make soak`` runs the same with
TWOTIER_SOAK_OPERATIONS (and TWOTIER_SOAK_CLIENTS) set much higher.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.broken import UnversionedCache
from tests.conftest import (
    SERVER_URLS,
    database_url,
    emptied,
    open_store,
    redis_namespace,
    require,
)
from tests.consistency.checker import (
    HEROES,
    PRODUCTS,
    QUERIED,
    History,
    Key,
    Row,
    Subject,
    Workload,
    freeze,
    run,
)
from twotier.bench.target import Target
from twotier.cache.base import Cache
from twotier.cache.redis import RedisCache
from twotier.policy import CacheKeys, Tuning, combined
from twotier.resources import Record, load_resources
from twotier.store.base import Query, Rows, Store
from twotier.store.sql import SQLStore
from twotier.store.sql_rows import SQLRows

OPERATIONS = int(os.environ.get("TWOTIER_SOAK_OPERATIONS", "2500"))
CLIENTS = int(os.environ.get("TWOTIER_SOAK_CLIENTS", "16"))
# Short TTLs: entries expire all the time, so fills race with writes all the time.
FAST_EXPIRY = {"TWOTIER_CACHE_TTL": "0.3", "TWOTIER_CACHE_NEGATIVE_TTL": "0.2"}
#: The heroes and a resource with a client-given string key, declared side by side.
DECLARATION = Path(__file__).parent.parent / "products.toml"
RESOURCES = {resource.name: resource for resource in load_resources(DECLARATION)}
SUBJECTS = [HEROES, PRODUCTS]


def queried_declaration(directory: Path) -> Path:
    """The test resources, each subject's declaring what its queries need (``QUERIED``)."""
    text = DECLARATION.read_text()
    for line, declared in QUERIED.items():
        assert line in text
        text = text.replace(line, declared)
    path = directory / "queried.toml"
    path.write_text(text)
    return path


def rows_of(store: Store, subject: Subject) -> Rows:
    return store.rows(subject.path.strip("/"))


async def database_rows(rows: Rows, keys: list[Key]) -> dict[Key, Row | None]:
    found = await rows.get_many(keys)
    return {key: freeze(found[key].values) if key in found else None for key in keys}


async def cache_disagreements(
    cache: Cache,
    store: Store,
    rows: Rows,
    subject: Subject,
    database: dict[Key, Row | None],
) -> list[str]:
    """Every entry the cache holds must say what the database says."""
    problems = []
    names = CacheKeys(rows.resource, await store.identity(), in_order=rows.pages_in_order)
    for key, row in database.items():
        entry = await cache.get(names.row(key))
        if entry is None:
            continue
        cached = None if entry.absent else freeze(orjson.loads(entry.body))
        if cached != row:
            problems.append(f"cache holds {key} as {cached}, the database as {row}")
    for value in subject.values:
        truth = [r.values for r in (await rows.lookup(subject.lookup, [value]))[value]]
        query = Query(((subject.lookup, value),), None if subject.client_keys else 0, 1000)
        filed = [
            (
                names.lookup(subject.lookup, value),
                (names.lookup_generation(subject.lookup, value),),
            ),
            names.page(query),
        ]
        for name, generation_keys in filed:
            pairs = [(name, generation_key) for generation_key in generation_keys]
            found = await cache.get_with_generations(pairs, [0] * len(pairs), 60)
            entry = found[0][0]
            if entry is None or entry.version != combined([g for _, g in found]):
                continue  # stale by generation: never served
            body = orjson.loads(entry.body)
            items = body if isinstance(body, list) else body["items"]
            if items != truth:
                problems.append(f"cache entry {name} disagrees with the database")
    return problems


def judge(
    history: History, database: dict[Key, Row | None], *, servers_killed: bool = False
) -> list[str]:
    """Everything wrong with ``history``; a request cut off is wrong unless the test killed
    servers under the clients."""
    cut_off = [] if servers_killed else history.cut_off
    return history.errors + cut_off + history.stale_reads() + history.lost_writes(database)


@pytest.fixture
async def mariadb(tmp_path: object) -> AsyncIterator[SQLStore]:
    async with emptied(
        SQLStore(database_url("mysql", tmp_path), list(RESOURCES.values()))
    ) as store:
        yield store


@pytest.fixture
async def database(
    request: pytest.FixtureRequest, tmp_path: object
) -> AsyncIterator[tuple[str, Store]]:
    """A database with the subjects' empty tables, and its URL."""
    url = database_url(request.param, tmp_path)
    async with emptied(open_store(url, tuple(RESOURCES.values()))) as store:
        yield url, store


@pytest.mark.parametrize("subject", SUBJECTS, ids=["heroes", "products"])
@pytest.mark.parametrize(
    ("database", "workers", "near_cache_ttl"),
    [("mysql", 2, "0"), ("mysql", 1, "10"), ("postgres", 2, "0"), ("dynamodb", 2, "0")],
    ids=[
        "mysql-2-workers-redis",
        "mysql-1-worker-near-cache",
        "postgres-2-workers-redis",
        "dynamodb-2-workers-redis",
    ],
    indirect=["database"],
)
async def test_concurrent_clients_never_see_stale_data_nor_lose_writes(
    database: tuple[str, Store],
    workers: int,
    near_cache_ttl: str,
    subject: Subject,
    tmp_path: Path,
) -> None:
    require("redis")
    url, store = database
    namespace = redis_namespace()
    # On the SQL stores the resources declare ranges, sets and prefixes, and the clients
    # ask for them too (DynamoDB refuses them).
    queries = not url.startswith("dynamodb")
    env = {
        "TWOTIER_DATABASE_URL": url,
        "TWOTIER_CACHE_URL": SERVER_URLS["redis"],
        "TWOTIER_CACHE_NAMESPACE": namespace,
        "TWOTIER_NEAR_CACHE_TTL": near_cache_ttl,
        "TWOTIER_RESOURCES": str(queried_declaration(tmp_path) if queries else DECLARATION),
        **FAST_EXPIRY,
    }
    rows = rows_of(store, subject)
    with Target(workers=workers, env=env) as target:
        async with httpx.AsyncClient(
            base_url=target.url, headers=target.headers, timeout=30
        ) as client:
            workload = Workload(clients=CLIENTS, operations=OPERATIONS, queries=queries)
            history = await run(client, workload, subject)
        truth = await database_rows(rows, list(history.writes))
        cache = RedisCache(SERVER_URLS["redis"], namespace=namespace)
        try:
            problems = judge(history, truth) + await cache_disagreements(
                cache, store, rows, subject, truth
            )
        finally:
            await cache.close()
    assert sum(len(w) for w in history.writes.values()) > OPERATIONS // 5
    assert len(history.reads) > OPERATIONS // 2
    pages = [read for read in history.reads if read.asked.startswith(subject.path)]
    assert len(pages) > (OPERATIONS // 20 if queries else -1)
    assert not problems, "\n".join(problems[:20])


class SlowFills:
    """The real rows, with reads that take a while to come back (a loaded database, a
    pause): the window in which a fill can race a write."""

    def __init__(self, inner: SQLRows) -> None:
        self.inner = inner
        self.resource = inner.resource
        self._rng = random.Random(7)

    async def _pause(self) -> None:
        await asyncio.sleep(self._rng.uniform(0, 0.05))

    async def get_many(self, keys: Sequence[Key]) -> dict[Key, Record]:
        records = await self.inner.get_many(keys)
        await self._pause()
        return records

    async def find(self, query: Query) -> list[Record]:
        records = await self.inner.find(query)
        await self._pause()
        return records

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class SlowStore:
    """The real store, handing out slow rows."""

    def __init__(self, inner: SQLStore) -> None:
        self.inner = inner

    def rows(self, resource: str) -> SlowFills:
        return SlowFills(self.inner.rows(resource))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("versions", [True, False], ids=["versioned", "unversioned"])
async def test_the_checker_catches_a_policy_without_versions(
    mariadb: SQLStore, versions: bool
) -> None:
    from twotier.access.rate_limit import MemoryRateLimiter
    from twotier.access.rules import Access
    from twotier.api.app import create_app
    from twotier.bootstrap import Composition, rules_of
    from twotier.cache.resilient import ResilientCache
    from twotier.config import Settings
    from twotier.service import Service

    require("redis")
    redis = RedisCache(SERVER_URLS["redis"], namespace=redis_namespace(), timeout=5)
    cache = redis if versions else UnversionedCache(redis)
    tuning = Tuning(ttl=0.1, negative_ttl=0.1)  # entries expire all the time: many fills
    resilient = ResilientCache(cache, generation_ttl=tuning.generation_ttl)
    service = Service(SlowStore(mariadb), resilient, [RESOURCES["heroes"]], tuning=tuning)
    await service.prepare()  # files the entries under the database's identity
    # Keyless clients, whose reads that skip the cache are not to be rationed here.
    settings = Settings(require_key_for_writes=False, anonymous_bypass_per_second=1e9)
    access = Access(rules_of(settings), service.keyring, MemoryRateLimiter())
    app = create_app(settings, Composition(service, access))
    transport = httpx.ASGITransport(app=app)
    rows = rows_of(mariadb, HEROES)
    # A race is a matter of chance: the broken policy gets up to three bounded rounds to
    # show itself (it does in the first, almost always); the correct one gets the same.
    problems: list[str] = []
    try:
        for _ in range(3):
            async with httpx.AsyncClient(transport=transport, base_url="http://checker") as client:
                history = await run(client, Workload(clients=16, operations=OPERATIONS, hot_keys=6))
            database = await database_rows(rows, list(history.writes))
            problems += judge(history, database)
            problems += await cache_disagreements(redis, mariadb, rows, HEROES, database)
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
