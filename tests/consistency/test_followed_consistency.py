"""The checker with writers beside the API: plain-SQL updates mixed into its load, on
MariaDB with a ROW binlog (a server of the test's own) and Redis, served by two workers
that follow the binlog. With the follower, no read is older than its bound allows; without
it (the control), the checker finds the stale reads a cache keeps for its TTL."""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import SERVER_URLS, emptied, redis_namespace, require
from tests.consistency.checker import HEROES, History, Key, Outsider, Workload, Write, freeze, run
from tests.consistency.test_consistency import (
    CLIENTS,
    DECLARATION,
    OPERATIONS,
    RESOURCES,
    cache_disagreements,
    database_rows,
    judge,
    rows_of,
)
from tests.own_servers import OwnMariaDB
from twotier.bench.target import Target
from twotier.cache.redis import RedisCache
from twotier.store.sql import SQLStore

#: How long after its commit a write made beside the API may still be missing from what the
#: API answers: the follower's lag (milliseconds when it keeps up), with room for a loaded
#: machine. Not a speed: a correctness bound, the one docs/guarantees.md states.
FOLLOW_BOUND = 3.0


def plain_sql_writer(store: SQLStore, bound: float) -> Outsider:
    """Updates of hot heroes by plain SQL, as another service would make them: each in a
    transaction that reads back the row and the version the database's trigger gave it."""

    async def write(history: History, keys: list[Key], done: asyncio.Event) -> None:
        rng = random.Random(7)
        marker = 10**8
        while not done.is_set():
            await asyncio.sleep(0.005)
            key, marker = rng.choice(keys), marker + 1
            start = time.monotonic()
            async with store.engine.begin() as conn:
                changed = await conn.execute(
                    text("UPDATE superheroes SET name = :name, xp = :xp WHERE id = :key"),
                    {"name": f"o{marker}", "xp": rng.choice(HEROES.values), "key": key},
                )
                if not changed.rowcount:  # deleted meanwhile
                    continue
                found = (
                    await conn.execute(
                        text(
                            "SELECT id, name, hero, power, xp, color, version "
                            "FROM superheroes WHERE id = :key"
                        ),
                        {"key": key},
                    )
                ).one()
            end = time.monotonic() + bound
            row = dict(found._mapping)
            version = row.pop("version")
            history.writes[key].append(Write(key, start, end, freeze(row), version))

    return write


@pytest.mark.parametrize("follow", ["on", "off"], ids=["followed", "control-unfollowed"])
async def test_writes_beside_the_api_are_seen_within_the_followers_bound(
    binlog_mariadb: OwnMariaDB, follow: str
) -> None:
    """Plain-SQL updates mixed into the checker's load, on MariaDB with a ROW binlog and two
    workers that follow it (``TWOTIER_FOLLOW=on``), with the usual TTL (300 s): without
    the follower, a cached row stays stale for minutes. No read may be older than the
    newest write acknowledged (for a plain-SQL one: committed ``FOLLOW_BOUND`` seconds)
    before it started, and once everything stops, the cache says what the database says."""
    require("redis")
    namespace = redis_namespace()
    async with emptied(SQLStore(binlog_mariadb.url, list(RESOURCES.values()))) as store:
        env = {
            "TWOTIER_DATABASE_URL": binlog_mariadb.url,
            "TWOTIER_CACHE_URL": SERVER_URLS["redis"],
            "TWOTIER_CACHE_NAMESPACE": namespace,
            "TWOTIER_NEAR_CACHE_TTL": "0",
            "TWOTIER_RESOURCES": str(DECLARATION),
            "TWOTIER_FOLLOW": follow,
        }
        rows = rows_of(store, HEROES)
        with Target(workers=2, env=env) as target:
            async with httpx.AsyncClient(
                base_url=target.url, headers=target.headers, timeout=30
            ) as client:
                await asyncio.sleep(1)  # the followers start (one takes the lease)
                workload = Workload(clients=CLIENTS, operations=OPERATIONS)
                history = await run(client, workload, HEROES, plain_sql_writer(store, FOLLOW_BOUND))
            await asyncio.sleep(FOLLOW_BOUND)  # the follower's last changes
            truth = await database_rows(rows, list(history.writes))
            cache = RedisCache(SERVER_URLS["redis"], namespace=namespace)
            try:
                problems = judge(history, truth) + await cache_disagreements(
                    cache, store, rows, HEROES, truth
                )
            finally:
                await cache.close()
    beside = [
        write
        for writes in history.writes.values()
        for write in writes
        if write.value is not None and dict(write.value)["name"].startswith("o")
    ]
    assert len(beside) > 20  # plain SQL did write, all along
    if follow == "on":
        assert not problems, "\n".join(problems[:20])
    else:  # the checker sees what a cache without the follower serves
        assert any("acknowledged" in problem for problem in problems)
