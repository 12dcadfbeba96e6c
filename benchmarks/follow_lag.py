"""How long a write that bypasses twotier takes to reach the cache: commit to invalidation,
end to end, under a steady write load (issue 15's bound, measured).

A database server of its own (MariaDB with a ROW binlog, or PostgreSQL with
wal_level=logical: the same as the tests'), Redis, and ``twotier follow`` in a process of its
own. A writer makes plain-SQL updates of random rows at a steady rate, each in a transaction
that reads back the version the database gave it; for each, a prober polls the row's cache
entry (every millisecond) until it holds that version. The figure is the time from the
commit's return to that moment: the follower's lag, plus up to a millisecond of polling.

    .venv/bin/python benchmarks/follow_lag.py --database mariadb --rate 200 --seconds 30
    .venv/bin/python benchmarks/follow_lag.py --database postgres --rate 200 --seconds 30

Run from the repository's root (it borrows the tests' own-server helpers); it prints a
table and writes the raw figures as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.own_servers import OwnMariaDB, OwnPostgres

from twotier.bootstrap import build_service
from twotier.cache.redis import RedisCache
from twotier.config import Settings
from twotier.policy import CacheKeys
from twotier.store.sql import SQLStore

ROWS = 1000
TWOTIER = str(Path(sys.executable).with_name("twotier"))


async def measure(url: str, redis_url: str, rate: float, seconds: float) -> list[float]:
    namespace = f"lag{random.randrange(10**9)}"
    settings = Settings(database_url=url, cache_url=redis_url, cache_namespace=namespace)
    service = build_service(settings)
    await service.prepare()
    heroes = service.resource("heroes")
    rows = [
        {"name": f"h{i}", "hero": "H", "power": "P", "xp": i % 100, "color": "C"}
        for i in range(ROWS)
    ]
    made = [
        r
        for start in range(0, ROWS, 500)
        for r in await heroes.create_many(rows[start : start + 500])
    ]
    keys = [r["id"] for r in made]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTIER_")} | {
        "TWOTIER_DATABASE_URL": url,
        "TWOTIER_CACHE_URL": redis_url,
        "TWOTIER_CACHE_NAMESPACE": namespace,
    }
    follower = await asyncio.create_subprocess_exec(
        TWOTIER, "follow", env=env, stdout=subprocess.DEVNULL
    )
    cache = RedisCache(redis_url, namespace=namespace, timeout=5)
    names = CacheKeys(heroes.resource, service.database_id)
    store = service.store
    assert isinstance(store, SQLStore)
    try:
        await _until_following(cache, service.database_id)
        lags: list[float] = []
        probes: list[asyncio.Task[None]] = []

        async def probe(key: int, version: int, committed: float) -> None:
            name = names.row(key)
            while True:
                entry = await cache.get(name)
                if entry is not None and entry.version >= version:
                    lags.append(time.monotonic() - committed)
                    return
                await asyncio.sleep(0.001)

        rng = random.Random(0)
        interval = 1 / rate
        deadline = time.monotonic() + seconds
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            key = rng.choice(keys)
            async with store.engine.begin() as conn:
                await conn.execute(
                    text("UPDATE superheroes SET xp = xp + 1 WHERE id = :key"), {"key": key}
                )
                version = await conn.scalar(
                    text("SELECT version FROM superheroes WHERE id = :key"), {"key": key}
                )
            committed = time.monotonic()
            probes.append(asyncio.create_task(probe(key, int(version), committed)))
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.wait_for(asyncio.gather(*probes), timeout=60)
        return lags
    finally:
        follower.terminate()
        await asyncio.wait_for(follower.wait(), timeout=30)
        await cache.clear()
        await cache.close()
        await service.close()


async def _until_following(cache: RedisCache, database_id: str) -> None:
    from twotier.follow.follower import POSITION_KEY

    for _ in range(300):
        if await cache.get(f"{database_id}:{POSITION_KEY}") is not None:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the follower did not start following")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["mariadb", "postgres"], default="mariadb")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rate", type=float, default=200, help="plain-SQL updates a second")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--out", type=Path, default=None, help="JSON of the figures")
    args = parser.parse_args()

    if args.database == "mariadb":
        server: Any = OwnMariaDB(Path(tempfile.mkdtemp(prefix="lag-")), binlog=True)
    else:
        server = OwnPostgres()
    server.start()
    try:
        lags = asyncio.run(measure(server.url, args.redis, args.rate, args.seconds))
    finally:
        if args.database == "mariadb":
            server.crash()
        else:
            server.remove()
    ms = sorted(lag * 1000 for lag in lags)
    quantiles = statistics.quantiles(ms, n=100)
    figures = {
        "database": args.database,
        "rate_per_second": args.rate,
        "seconds": args.seconds,
        "writes": len(ms),
        "p50_ms": round(quantiles[49], 2),
        "p90_ms": round(quantiles[89], 2),
        "p99_ms": round(quantiles[98], 2),
        "max_ms": round(ms[-1], 2),
    }
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures | {"lags_ms": [round(x, 3) for x in ms]}) + "\n")


if __name__ == "__main__":
    main()
