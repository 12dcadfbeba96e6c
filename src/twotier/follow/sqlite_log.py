"""SQLite (the embedded default): the changes its triggers record.

SQLite keeps no change log a reader can follow, so ``db init`` gives every resource table
triggers that record each committed change in ``twotier_changes`` (``store.sql_triggers``):
the row before and after as JSON, at the version it ends at. This reads that table in order,
by its sequence number (the position), every ``_POLL`` seconds while it is quiet — an
indexed read of nothing, microseconds — and at once again while it is busy.

Rows older than ``retention`` are deleted as it goes; a follower whose position is older
than what is left has lost it (as with a purged binlog), and so has one whose position is
beyond the table's (the file was replaced).

A bulk load records one change of the whole table (neither image): the follower empties its
cache. Each follower that reads the table writes how far it has applied it, and when, in
``twotier_follower_progress``, once its cache has taken a batch, and every second while
quiet: a bulk load in another process waits there until every live follower (each server
with an in-process cache has its own) has emptied its cache, so that no read after the load
returns is served from before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import orjson
from sqlalchemy import text

from twotier.errors import ChangeLogUnavailable, PositionLost, StoreUnavailable
from twotier.follow.changes import Batch, Change
from twotier.resources.fields import BinaryField
from twotier.store.sql import SQLStore
from twotier.store.sql_errors import unavailable
from twotier.store.sql_rows import SQLRows
from twotier.store.sql_triggers import CHANGES_TABLE, PROGRESS_TABLE

_POLL = 0.05  # seconds between reads of a quiet table
_PAGE = 1000  # changes read at once
_HEARTBEAT = 1.0  # seconds between batches without changes
_TRIM_EVERY = 10.0  # seconds between deletions of old changes


class SQLiteChangeLog:
    name = "sqlite change table"

    def __init__(
        self, store: SQLStore, rows: Sequence[SQLRows], *, retention: float = 3600.0
    ) -> None:
        self._store = store
        self._tables = {each.table.name: each for each in rows}
        self._retention = retention
        self._id = uuid.uuid4().hex  # this follower's row of progress

    async def _scalar(self, statement: str, **values: Any) -> Any:
        try:
            async with self._store.connect() as conn:
                return await conn.scalar(text(statement), values)
        except unavailable(StoreUnavailable) as error:
            raise ChangeLogUnavailable(f"{CHANGES_TABLE} unreadable: {error}") from error

    async def _last(self) -> int:
        """The last sequence number ever given (AUTOINCREMENT never gives one twice)."""
        found = await self._scalar(
            "SELECT seq FROM sqlite_sequence WHERE name = :table", table=CHANGES_TABLE
        )
        return int(found or 0)

    async def prepare(self) -> None:
        return None  # db init made the triggers and the table with the schema

    async def now(self) -> str:
        return str(await self._last())

    async def batches(self, position: str) -> AsyncGenerator[Batch, None]:
        after = int(position)
        oldest = await self._scalar(f"SELECT min(seq) FROM {CHANGES_TABLE}")
        last = await self._last()
        # Whatever was recorded after the position must still be there: from the change
        # right after it (or, all trimmed, none after it at all).
        kept_from = last + 1 if oldest is None else int(oldest)
        if after > last or after < kept_from - 1:
            raise PositionLost(f"the changes after {after} are no longer in {CHANGES_TABLE}")
        heard = trimmed = time.monotonic()
        while True:
            rows = await self._read(after)
            now = time.monotonic()
            if rows:
                after = rows[-1][0]
                changes = tuple(c for row in rows if (c := self._change(row)) is not None)
                yield Batch(changes, str(after), max(row[4] for row in rows))
                # Asked for the next batch: this one is in the cache. A load waits on it.
                if any(c.whole_table for c in changes) or now - heard >= _HEARTBEAT:
                    await self._progress(after)
                heard = now
                if len(rows) == _PAGE:
                    continue  # more waiting: read on at once
            elif now - heard >= _HEARTBEAT:
                yield Batch((), str(after))
                await self._progress(after)
                heard = now
            if now - trimmed >= _TRIM_EVERY:
                await self._trim()
                trimmed = now
            await asyncio.sleep(_POLL)

    async def _read(self, after: int) -> list[Any]:
        try:
            async with self._store.connect() as conn:
                found = await conn.execute(
                    text(
                        f"SELECT seq, tbl, old, new, at FROM {CHANGES_TABLE} "
                        "WHERE seq > :after ORDER BY seq LIMIT :page"
                    ),
                    {"after": after, "page": _PAGE},
                )
                return list(found)
        except unavailable(StoreUnavailable) as error:
            raise ChangeLogUnavailable(f"{CHANGES_TABLE} unreadable: {error}") from error

    def _change(self, row: Any) -> Change | None:
        _, table, old, new, _ = row
        rows = self._tables.get(table)
        if rows is None:  # a table no longer declared
            return None
        before = rows.from_log(_image(rows, old)) if old is not None else None
        after = rows.from_log(_image(rows, new)) if new is not None else None
        return Change(rows.resource.name, before, after)

    async def _trim(self) -> None:
        try:
            async with self._store.connect(write=True) as conn:
                before = time.time() - self._retention
                await conn.execute(
                    text(f"DELETE FROM {CHANGES_TABLE} WHERE at < :before"), {"before": before}
                )
                await conn.execute(
                    text(f"DELETE FROM {PROGRESS_TABLE} WHERE seen < :before"), {"before": before}
                )
        except unavailable(StoreUnavailable) as error:
            raise ChangeLogUnavailable(f"{CHANGES_TABLE} not trimmed: {error}") from error

    async def _progress(self, position: int) -> None:
        """This follower has applied the changes up to ``position``, now."""
        try:
            async with self._store.connect(write=True) as conn:
                await conn.execute(
                    text(
                        f"INSERT INTO {PROGRESS_TABLE} (follower, position, seen) "
                        "VALUES (:follower, :position, :seen) ON CONFLICT (follower) "
                        "DO UPDATE SET position = excluded.position, seen = excluded.seen"
                    ),
                    {"follower": self._id, "position": position, "seen": time.time()},
                )
        except unavailable(StoreUnavailable) as error:
            raise ChangeLogUnavailable(f"{PROGRESS_TABLE} not written: {error}") from error

    def settled(self, position: str) -> str:
        return position  # the changes table moves only as it is read

    async def saved(self, position: str) -> None:
        return None  # the log keeps its own retention, whoever follows

    async def close(self) -> None:
        # Gone: a bulk load waits for it no more.
        with contextlib.suppress(*unavailable(StoreUnavailable)):
            async with self._store.connect(write=True) as conn:
                await conn.execute(
                    text(f"DELETE FROM {PROGRESS_TABLE} WHERE follower = :follower"),
                    {"follower": self._id},
                )


def _image(rows: SQLRows, recorded: str) -> dict[str, Any]:
    """A row as the triggers recorded it (``sql_triggers.change_log_sql``), bytes as the hex
    they were written in."""
    image: dict[str, Any] = orjson.loads(recorded)
    for name in rows.resource.columns:
        if isinstance(rows.resource.field(name), BinaryField) and image.get(name) is not None:
            image[name] = bytes.fromhex(image[name])
    return image
