"""Bulk loading a resource's rows through each database's own bulk path, in one transaction.

- MySQL/MariaDB: ``LOAD DATA LOCAL INFILE`` reading a FIFO that a thread fills with the
  validated rows, so validation in Python and the load in the server overlap.
- PostgreSQL: ``COPY`` (binary, via asyncpg) into a temporary table, then one upsert.
- SQLite: ``executemany`` in large batches inside one transaction.

Rows whose key already exists replace it. Every loaded row gets ``version``, which the
caller makes larger than any version a cache may hold. ``keep()`` is asked after the last
row: False rolls everything back (``--strict`` with bad rows). Names come from the checked
declaration and are quoted all the same.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import sqlite3
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import orjson

from twotier.resources import Resource
from twotier.resources.fields import (
    BinaryField,
    IntegerField,
    JsonField,
    NumberField,
    StringField,
)
from twotier.store.base import LoadRows
from twotier.store.sql_statement import VERSION
from twotier.store.sql_triggers import CHANGES_TABLE, PROGRESS_TABLE
from twotier.store.sql_url import DatabaseURL

_SQLITE_BATCH = 50_000
#: Lines the feeding thread writes into the FIFO at once.
_FEED_CHUNK = 4096

log = logging.getLogger("twotier.load")


def _quoted(name: str, quote: str = '"') -> str:
    return f"{quote}{name}{quote}"


async def bulk_load(
    url: DatabaseURL,
    resource: Resource,
    rows: LoadRows,
    *,
    replace: bool,
    version: int,
    keep: Callable[[], bool],
    tls: ssl.SSLContext | None = None,
    referenced: bool = False,
    settings: dict[str, str] | None = None,
) -> int:
    """Load ``rows`` (values in the resource's column order, and their CSV line); return
    how many were loaded (0 if ``keep()`` said no). ``tls``: the store's TLS context (see
    sql_tls), used by the bulk connection too; ``settings``: PostgreSQL's run-time settings
    (the URL's ``options``). ``referenced``: other tables' foreign keys
    point at this one, so an existing row must be updated where it is, never deleted and
    inserted again (their ON DELETE would act)."""
    backend = url.get_backend_name()
    rows = _documents_as_text(resource, rows)
    if backend == "mysql":
        return await asyncio.to_thread(
            _mysql, url, resource, rows, replace, version, keep, tls, referenced
        )
    if backend == "sqlite":
        return await asyncio.to_thread(_sqlite, url, resource, rows, replace, version, keep)
    if backend == "postgresql":
        return await _postgresql(url, resource, rows, replace, version, keep, tls, settings)
    raise ValueError(f"no bulk path for {backend}")


def _documents_as_text(resource: Resource, rows: LoadRows) -> LoadRows:
    """JSON documents as their text, which every database's bulk path takes for a JSON
    column (and none takes a parsed object)."""
    places = [
        index
        for index, name in enumerate(resource.columns)
        if isinstance(resource.field(name), JsonField)
    ]
    if not places:
        return rows
    return (
        (
            tuple(
                orjson.dumps(value).decode() if index in places and value is not None else value
                for index, value in enumerate(values)
            ),
            line,
        )
        for values, line in rows
    )


def _counted(rows: LoadRows, counter: list[int]) -> Iterator[tuple[tuple[Any, ...], str]]:
    for item in rows:
        counter[0] += 1
        yield item


def _mysql(
    url: DatabaseURL,
    resource: Resource,
    rows: LoadRows,
    replace: bool,
    version: int,
    keep: Callable[[], bool],
    tls: ssl.SSLContext | None,
    referenced: bool,
) -> int:
    from twotier.store.sql_infile import OneFileConnection

    conn = OneFileConnection(
        ssl=tls,
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        database=url.database,
        charset="utf8mb4",
        autocommit=False,
    )
    counter = [0]
    failure: list[BaseException] = []
    stop = threading.Event()
    as_read = _lines_load_as_read(resource)
    table = _quoted(resource.table, "`")
    # Bytes travel as hex (a line is text) into a variable, and are set from it.
    binary = [
        index
        for index, name in enumerate(resource.columns)
        if isinstance(resource.field(name), BinaryField)
    ]
    columns = ", ".join(
        f"@hex{index}" if index in binary else _quoted(name, "`")
        for index, name in enumerate(resource.columns)
    )
    unhexed = "".join(
        f", {_quoted(resource.columns[index], '`')} = UNHEX(@hex{index})" for index in binary
    )
    # LOAD DATA … REPLACE deletes an existing row and inserts it again; where foreign keys
    # point at the table, rows go through a table of the load's own and are upserted.
    into = _quoted(f"{resource.table}_load", "`") if referenced else table
    with tempfile.TemporaryDirectory(prefix="twotier-load-") as work:
        fifo = str(Path(work) / "rows.csv")
        os.mkfifo(fifo, 0o600)

        def feed() -> None:
            try:
                with open(fifo, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as pipe:
                    chunk: list[str] = []
                    for values, line in rows:
                        # Quotes and NULL are LOAD DATA's own; "-0" (a -0.0 it would keep)
                        # is read as 0.0 here: those lines are written out again.
                        plain = as_read and '"' not in line and "NULL" not in line
                        plain = plain and "-0" not in line
                        chunk.append(line if plain else _mysql_line(values))
                        if len(chunk) == _FEED_CHUNK:
                            if stop.is_set():
                                return
                            _write_lines(pipe, chunk, counter)
                    _write_lines(pipe, chunk, counter)
            except BaseException as error:  # handed to the loading thread
                failure.append(error)

        writer = threading.Thread(target=feed, name="twotier-load-feed", daemon=True)
        writer.start()
        try:
            with conn.cursor() as cursor:
                if replace:
                    cursor.execute(f"DELETE FROM {table}")
                if referenced:
                    cursor.execute(f"CREATE TEMPORARY TABLE {into} LIKE {table}")
                with conn.sending(fifo):
                    cursor.execute(
                        f"LOAD DATA LOCAL INFILE %s REPLACE INTO TABLE {into} "
                        "CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' "
                        "OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY '\\n' "
                        f"({columns}) SET `{VERSION}` = %s{unhexed}",
                        (fifo, version),
                    )
                if referenced:
                    every = ", ".join(_quoted(n, "`") for n in (*resource.columns, VERSION))
                    updates = ", ".join(
                        f"{_quoted(n, '`')} = VALUES({_quoted(n, '`')})"
                        for n in (*resource.columns, VERSION)
                        if n not in resource.key_fields
                    )
                    cursor.execute(
                        f"INSERT INTO {table} ({every}) SELECT {every} FROM {into} "
                        f"ON DUPLICATE KEY UPDATE {updates}"
                    )
                    cursor.execute(f"DROP TEMPORARY TABLE {into}")
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


def _write_lines(pipe: TextIO, chunk: list[str], counter: list[int]) -> None:
    """The chunk's lines into the FIFO at once, counted; the chunk emptied."""
    counter[0] += len(chunk)
    chunk.append("")  # the last line's end
    pipe.write("\n".join(chunk))
    chunk.clear()


def _lines_load_as_read(resource: Resource) -> bool:
    """Whether a CSV line of this resource, as read, is what LOAD DATA needs: only text and
    numbers, none of them nullable (LOAD DATA reads booleans, date-times and empty cells
    its own way). Lines with quotes or a bare NULL are rewritten all the same."""
    return all(
        isinstance(resource.field(name), StringField | IntegerField | NumberField)
        and not resource.field(name).nullable
        for name in resource.columns
    )


def _mysql_line(values: tuple[Any, ...]) -> str:
    """A line LOAD DATA (OPTIONALLY ENCLOSED BY '"', no escapes) reads as ``values``: text
    quoted (a bare NULL would be SQL NULL; quotes doubled), booleans 1/0, date-times in
    UTC, None a bare NULL."""
    return ",".join(_mysql_cell(value) for value in values)


def _mysql_cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"'
    if isinstance(value, datetime):
        return _datetime_text(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        return value.hex()  # UNHEX'd by the statement
    return str(value)  # an integer, a decimal, a date (ISO 8601)


def _datetime_text(value: datetime) -> str:
    """A date-time as MySQL and SQLite keep it: an instant in UTC, a local one as it is."""
    moment = value.astimezone(UTC) if value.tzinfo is not None else value
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


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


def _sqlite(
    url: DatabaseURL,
    resource: Resource,
    rows: LoadRows,
    replace: bool,
    version: int,
    keep: Callable[[], bool],
) -> int:
    conn = sqlite3.connect(url.database or ":memory:", timeout=30, isolation_level=None)
    conn.execute("PRAGMA synchronous=FULL")
    names = [*resource.columns, VERSION]
    key = ", ".join(_quoted(n) for n in resource.key_fields)
    updates = ", ".join(
        f"{_quoted(n)} = excluded.{_quoted(n)}" for n in names if n not in resource.key_fields
    )
    # An existing key's row is updated in place, never deleted and inserted again (as
    # INSERT OR REPLACE would: a foreign key's ON DELETE would then act on the user's rows).
    insert = (
        f"INSERT INTO {_quoted(resource.table)} "
        f"({', '.join(_quoted(n) for n in names)}) VALUES ({', '.join('?' * len(names))}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )
    loaded = 0
    try:
        conn.execute("BEGIN IMMEDIATE")
        # The load is recorded as one change of the whole table, not as a row per loaded row:
        # its change-recording triggers go for the load and come back before the commit
        # (no other connection ever sees them missing), and one change with neither image
        # tells every follower to empty its cache (sql_triggers).
        recording = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
            "AND tbl_name = ? COLLATE NOCASE "
            "AND name LIKE 'twotier\\_%\\_log\\_%' ESCAPE '\\'",
            (resource.table,),
        ).fetchall()
        for name, _sql in recording:
            conn.execute(f"DROP TRIGGER {_quoted(name)}")
        if replace:
            conn.execute(f"DELETE FROM {_quoted(resource.table)}")
        batch: list[tuple[object, ...]] = []
        for values, _line in rows:
            batch.append((*(_sqlite_value(v) for v in values), version))
            if len(batch) >= _SQLITE_BATCH:
                conn.executemany(insert, batch)
                loaded += len(batch)
                batch.clear()
        conn.executemany(insert, batch)
        loaded += len(batch)
        if not keep():
            conn.execute("ROLLBACK")
            return 0
        for _name, sql in recording:
            conn.execute(sql)
        if recording:
            marker = conn.execute(
                f"INSERT INTO {CHANGES_TABLE} (tbl, old, new, at) VALUES (?, NULL, NULL, ?)",
                (resource.table, time.time()),
            ).lastrowid
        conn.execute("COMMIT")
        if recording and marker is not None:
            _wait_for_followers(conn, marker)
        return loaded
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


#: Seconds since its last word within which a follower counts as live.
_LIVE = 3.0
#: Seconds a load waits for the live followers to take it.
_TAKEN_WITHIN = 10.0


def _wait_for_followers(conn: sqlite3.Connection, marker: int) -> None:
    """Until every live follower (one per server with an in-process cache) has applied the
    change that records the load, and so emptied its cache; a follower that does not within
    ``_TAKEN_WITHIN`` seconds is named in the log (its server may answer from before the
    load until it does)."""
    deadline = time.monotonic() + _TAKEN_WITHIN
    while True:
        behind = conn.execute(
            f"SELECT follower FROM {PROGRESS_TABLE} WHERE seen > ? AND position < ?",
            (time.time() - _LIVE, marker),
        ).fetchall()
        if not behind:
            return
        if time.monotonic() > deadline:
            log.warning(
                "a follower has not taken the load yet: its server may answer from before "
                "it until it does",
                extra={"followers": [row[0] for row in behind]},
            )
            return
        time.sleep(0.02)


def _sqlite_value(value: Any) -> Any:
    """As SQLAlchemy stores it in SQLite: date-times as naive UTC text (local ones as they
    are), dates as ISO 8601 text, times to the microsecond, decimals as the
    doubles a NUMERIC column keeps (exact to 15 digits, the most a declaration may ask for
    on SQLite)."""
    if isinstance(value, datetime):
        return _datetime_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.strftime("%H:%M:%S.%f")  # SQLAlchemy's own form on SQLite
    if isinstance(value, Decimal):
        return float(value)
    return value


class _Rollback(Exception):
    pass


async def _postgresql(
    url: DatabaseURL,
    resource: Resource,
    rows: LoadRows,
    replace: bool,
    version: int,
    keep: Callable[[], bool],
    tls: ssl.SSLContext | None,
    settings: dict[str, str] | None = None,
) -> int:
    import asyncpg

    conn = await asyncpg.connect(
        ssl=tls,
        server_settings=settings or None,
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    counter = [0]
    names = [*resource.columns, VERSION]
    columns = ", ".join(_quoted(n) for n in names)
    key = ", ".join(_quoted(n) for n in resource.key_fields)
    updates = ", ".join(
        f"{_quoted(n)} = EXCLUDED.{_quoted(n)}" for n in names if n not in resource.key_fields
    )
    table, loading = _quoted(resource.table), _quoted(f"{resource.table}_load")
    try:
        async with conn.transaction():
            if replace:
                await conn.execute(f"DELETE FROM {table}")
            await conn.execute(
                f"CREATE TEMP TABLE {loading} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
            )
            await conn.copy_records_to_table(
                f"{resource.table}_load",
                records=((*values, version) for values, _line in _counted(rows, counter)),
                columns=names,
            )
            await conn.execute(
                f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {loading} "
                f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
            )
            if resource.auto_key:
                # Explicit ids do not move the id sequence; move it past them.
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence($1, $2), "
                    f"GREATEST((SELECT max({key}) FROM {table}), 1))",
                    table,  # parsed as a name (quoted: its case kept); the column is not
                    resource.key,
                )
            if not keep():
                raise _Rollback
        return counter[0]
    except _Rollback:
        return 0
    finally:
        await conn.close()
