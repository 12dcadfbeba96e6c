"""Bulk loading through each database's own bulk path, in one transaction.

- MySQL/MariaDB: ``LOAD DATA LOCAL INFILE`` reading a FIFO that a thread fills with the
  validated rows, so validation in Python and the load in the server overlap.
- PostgreSQL: ``COPY`` (binary, via asyncpg) into a temporary table, then one upsert.
- SQLite: ``executemany`` in large batches inside one transaction.

Rows with an id that already exists replace it. Every loaded row gets ``version``, which the
caller makes larger than any version a cache may hold. ``keep()`` is asked after the last
row: False rolls everything back (``--strict`` with bad rows).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from sqlalchemy import URL

from twotier.dataset import Row

Rows = Iterable[tuple[Row, str]]
_COLUMNS = ("id", "name", "hero", "power", "xp", "color", "version")
_SQLITE_BATCH = 50_000


async def bulk_load(
    url: URL,
    rows: Rows,
    *,
    replace: bool,
    version: int,
    keep: Callable[[], bool],
    tls: ssl.SSLContext | None = None,
) -> int:
    """Load ``rows``; return how many were loaded (0 if ``keep()`` said no). ``tls``: the
    store's TLS context (see sql_tls), used by the bulk connection too."""
    backend = url.get_backend_name()
    if backend == "mysql":
        return await asyncio.to_thread(_mysql, url, rows, replace, version, keep, tls)
    if backend == "sqlite":
        return await asyncio.to_thread(_sqlite, url, rows, replace, version, keep)
    if backend == "postgresql":
        return await _postgresql(url, rows, replace, version, keep, tls)
    raise ValueError(f"no bulk path for {backend}")


def _counted(rows: Rows, counter: list[int]) -> Iterator[tuple[Row, str]]:
    for item in rows:
        counter[0] += 1
        yield item


def _mysql(
    url: URL,
    rows: Rows,
    replace: bool,
    version: int,
    keep: Callable[[], bool],
    tls: ssl.SSLContext | None,
) -> int:
    import pymysql

    conn = pymysql.connect(
        ssl=tls,
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        database=url.database,
        charset="utf8mb4",
        local_infile=True,
        autocommit=False,
    )
    counter = [0]
    failure: list[BaseException] = []
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="twotier-load-") as work:
        fifo = str(Path(work) / "rows.csv")
        os.mkfifo(fifo, 0o600)

        def feed() -> None:
            try:
                with open(fifo, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as pipe:
                    for _row, line in _counted(rows, counter):
                        if stop.is_set():
                            return
                        pipe.write(line)
                        pipe.write("\n")
            except BaseException as error:  # handed to the loading thread
                failure.append(error)

        writer = threading.Thread(target=feed, name="twotier-load-feed", daemon=True)
        writer.start()
        try:
            with conn.cursor() as cursor:
                if replace:
                    cursor.execute("DELETE FROM superheroes")
                cursor.execute(
                    "LOAD DATA LOCAL INFILE %s REPLACE INTO TABLE superheroes "
                    "CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' "
                    "ESCAPED BY '' LINES TERMINATED BY '\\n' "
                    "(id, name, hero, power, xp, color) SET version = %s",
                    (fifo, version),
                )
            writer.join()
            if failure:
                raise failure[0]
            if not keep():
                conn.rollback()
                return 0
            conn.commit()
            return counter[0]
        except BaseException:
            conn.rollback()
            stop.set()
            _drain(fifo, writer)
            raise
        finally:
            conn.close()


def _drain(fifo: str, writer: threading.Thread) -> None:
    """Unblock a feeding thread whose reader went away, so it can see ``stop`` and end."""
    if not writer.is_alive():
        return
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        while writer.is_alive():
            try:
                if not os.read(fd, 1 << 16):
                    writer.join(0.01)
            except BlockingIOError:
                writer.join(0.01)
    finally:
        os.close(fd)


def _sqlite(url: URL, rows: Rows, replace: bool, version: int, keep: Callable[[], bool]) -> int:
    conn = sqlite3.connect(url.database or ":memory:", timeout=30, isolation_level=None)
    insert = (
        f"INSERT OR REPLACE INTO superheroes ({', '.join(_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    loaded = 0
    try:
        conn.execute("BEGIN IMMEDIATE")
        if replace:
            conn.execute("DELETE FROM superheroes")
        batch: list[tuple[object, ...]] = []
        for row, _line in rows:
            batch.append((*row, version))
            if len(batch) >= _SQLITE_BATCH:
                conn.executemany(insert, batch)
                loaded += len(batch)
                batch.clear()
        conn.executemany(insert, batch)
        loaded += len(batch)
        if not keep():
            conn.execute("ROLLBACK")
            return 0
        conn.execute("COMMIT")
        return loaded
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


class _Rollback(Exception):
    pass


async def _postgresql(
    url: URL,
    rows: Rows,
    replace: bool,
    version: int,
    keep: Callable[[], bool],
    tls: ssl.SSLContext | None,
) -> int:
    import asyncpg

    conn = await asyncpg.connect(
        ssl=tls,
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    counter = [0]
    columns = ", ".join(_COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS[1:])
    try:
        async with conn.transaction():
            if replace:
                await conn.execute("DELETE FROM superheroes")
            await conn.execute(
                "CREATE TEMP TABLE superheroes_load (LIKE superheroes INCLUDING DEFAULTS) "
                "ON COMMIT DROP"
            )
            await conn.copy_records_to_table(
                "superheroes_load",
                records=((*row, version) for row, _line in _counted(rows, counter)),
                columns=list(_COLUMNS),
            )
            await conn.execute(
                f"INSERT INTO superheroes ({columns}) SELECT {columns} FROM superheroes_load "
                f"ON CONFLICT (id) DO UPDATE SET {updates}"
            )
            # Explicit ids do not move the id sequence; move it past them.
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('superheroes', 'id'), "
                "GREATEST((SELECT max(id) FROM superheroes), 1))"
            )
            if not keep():
                raise _Rollback
        return counter[0]
    except _Rollback:
        return 0
    finally:
        await conn.close()
