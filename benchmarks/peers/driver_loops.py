"""The database driver alone: the ceiling of any app reading or writing rows by key.

64 coroutines, each in a loop, through a pool of 10 connections (twotier's pool size), for
a fixed time; no HTTP, no cache, no framework. Operations, the same statements twotier
sends for them:

- ``read``: one row by key, autocommit (``SELECT … WHERE id = ?``), ids uniform;
- ``insert``: a transaction inserting one row (what ``POST /heroes`` commits);
- ``update``: a transaction locking one row and updating it (``SELECT … FOR UPDATE``, then
  ``UPDATE … SET …, version = version + 1``: what ``PUT /heroes/{id}`` commits).

Prints one JSON line: requests, seconds, rps, p50_ms, p99_ms. Rows inserted get names
starting with ``driver-loop`` (the bench deletes them afterwards).

    python driver_loops.py --driver aiomysql --dsn mysql://root@127.0.0.1:3306/twotier_bench \
        --op read --rows 1000000 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from common import mysql_params

COLUMNS = "id, name, hero, power, xp, color, version"
FIELDS = ("name", "hero", "power", "xp", "color")


def _sql(dollar: bool) -> dict[str, str]:
    """The statements with the driver's placeholders (``%s`` or ``$n``)."""

    def marks(count: int, start: int = 1) -> list[str]:
        return [f"${n}" if dollar else "%s" for n in range(start, start + count)]

    sets = ", ".join(f"{f} = {m}" for f, m in zip(FIELDS, marks(5), strict=True))
    return {
        "read": f"SELECT {COLUMNS} FROM superheroes WHERE id = {marks(1)[0]}",
        "insert": f"INSERT INTO superheroes ({', '.join(FIELDS)}, version) "
        f"VALUES ({', '.join(marks(6))})",
        "lock": f"SELECT {COLUMNS} FROM superheroes WHERE id = {marks(1)[0]} FOR UPDATE",
        "update": f"UPDATE superheroes SET {sets}, version = version + 1 "
        f"WHERE id = {marks(1, 6)[0]}",
    }


def _row(rng: random.Random) -> tuple[Any, ...]:
    return ("driver-loop", "Loop", "looping", rng.randrange(1000), "blue")


async def mysql_ops(module: str, dsn: str, pool_size: int) -> tuple[dict[str, Any], Any]:
    """aiomysql or asyncmy (the same pool and cursor API)."""
    driver: Any = __import__(module)
    pool = await driver.create_pool(
        **mysql_params(dsn), minsize=pool_size, maxsize=pool_size, autocommit=True
    )
    sql = _sql(dollar=False)

    async def read(rng: random.Random, rows: int) -> None:
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(sql["read"], (rng.randint(1, rows),))
            await cur.fetchone()

    async def insert(rng: random.Random, rows: int) -> None:
        async with pool.acquire() as conn:
            await conn.begin()
            async with conn.cursor() as cur:
                await cur.execute(sql["insert"], (*_row(rng), 1))
            await conn.commit()

    async def update(rng: random.Random, rows: int) -> None:
        key = rng.randint(1, rows)
        async with pool.acquire() as conn:
            await conn.begin()
            async with conn.cursor() as cur:
                await cur.execute(sql["lock"], (key,))
                await cur.fetchone()
                await cur.execute(sql["update"], (*_row(rng), key))
            await conn.commit()

    return {"read": read, "insert": insert, "update": update}, pool


async def postgres_ops(dsn: str, pool_size: int) -> tuple[dict[str, Any], Any]:
    import asyncpg

    pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
    sql = _sql(dollar=True)

    async def read(rng: random.Random, rows: int) -> None:
        await pool.fetchrow(sql["read"], rng.randint(1, rows))

    async def insert(rng: random.Random, rows: int) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(sql["insert"], *_row(rng), 1)

    async def update(rng: random.Random, rows: int) -> None:
        key = rng.randint(1, rows)
        async with pool.acquire() as conn, conn.transaction():
            await conn.fetchrow(sql["lock"], key)
            await conn.execute(sql["update"], *_row(rng), key)

    return {"read": read, "insert": insert, "update": update}, pool


async def run(
    driver: str, dsn: str, op: str, rows: int, duration: float, concurrency: int, pool_size: int
) -> dict[str, float]:
    if driver == "asyncpg":
        ops, pool = await postgres_ops(dsn, pool_size)
    else:
        ops, pool = await mysql_ops(driver, dsn, pool_size)
    call: Callable[[random.Random, int], Awaitable[None]] = ops[op]
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        while loop.time() < deadline:
            started = time.perf_counter()
            await call(rng, rows)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    seconds = time.perf_counter() - started
    pool.close()
    if driver != "asyncpg":
        await pool.wait_closed()
    latencies.sort()
    count = len(latencies)
    return {
        "requests": count,
        "seconds": seconds,
        "rps": count / seconds,
        "p50_ms": latencies[count // 2] * 1000 if count else 0.0,
        "p99_ms": latencies[min(count - 1, count * 99 // 100)] * 1000 if count else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--driver", choices=["aiomysql", "asyncmy", "asyncpg"], required=True)
    parser.add_argument("--dsn", required=True, help="mysql://… or postgresql://…")
    parser.add_argument("--op", choices=["read", "insert", "update"], default="read")
    parser.add_argument("--rows", type=int, required=True, help="ids are 1..rows")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--pool", type=int, default=10)
    args = parser.parse_args()
    try:
        import uvloop

        run_loop: Any = uvloop.run  # granian serves on uvloop: the same loop here
    except ImportError:
        run_loop = asyncio.run
    result = run_loop(
        run(args.driver, args.dsn, args.op, args.rows, args.duration, args.concurrency, args.pool)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
