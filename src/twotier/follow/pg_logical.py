"""PostgreSQL and Aurora PostgreSQL: logical decoding from a replication slot.

The slot decodes with ``pgoutput``, PostgreSQL's own plugin (no extension to install, on
every server since 10 and on RDS and Aurora), for the tables of a publication twotier
keeps (``twotier``: the declared tables, each with ``REPLICA IDENTITY FULL`` so that an
update or deletion carries the row as it was, whose lookup values the follower moves).

It is read by polling ``pg_logical_slot_peek_binary_changes`` on an ordinary connection
(asyncpg, as the store's): every ``_POLL`` seconds while quiet, at once again while busy. A
peek leaves the slot where it was; the slot is moved (``pg_replication_slot_advance``) only
to a position the follower has saved (``saved``), so a follower that dies resumes from its
saved position, and the server keeps the WAL from there — bounded by the server's
``max_slot_wal_keep_size``, past which it drops the slot's claim and the follower finds its
position lost. ``twotier_follow_retained_bytes`` reports how much WAL the slot holds back.

One slot per cache namespace (``twotier_`` and a digest of it): two caches over one
database each follow at their own pace. A position is an LSN (``0/16B3748``), just after a
commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import time
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from twotier.follow.changes import (
    Batch,
    Change,
    ChangeLogUnavailable,
    FollowRefused,
    PositionLost,
)
from twotier.resources import Record
from twotier.resources.fields import BooleanField, IntegerField, NumberField, TimestampField
from twotier.store.base import StoreUnavailable
from twotier.store.sql import SQLStore
from twotier.store.sql_errors import UNAVAILABLE
from twotier.store.sql_follower import PUBLICATION, publish
from twotier.store.sql_rows import SQLRows
from twotier.store.sql_schema import VERSION
from twotier.telemetry import FOLLOW_RETAINED

_POLL = 0.05  # seconds between peeks at a quiet slot
_PEEK = 2000  # changes decoded at once at most (whole transactions: it may be more)
_HEARTBEAT = 1.0  # seconds between batches without changes
_EPOCH_2000 = 946_684_800  # PostgreSQL's timestamps count microseconds from 2000-01-01


def slot_name(namespace: str) -> str:
    return "twotier_" + hashlib.sha256(namespace.encode()).hexdigest()[:16]


def _lsn(value: str) -> int:
    high, _, low = value.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def _lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


class PgLogicalChangeLog:
    name = "postgresql logical decoding"

    def __init__(self, store: SQLStore, rows: Sequence[SQLRows], namespace: str) -> None:
        self._store = store
        self._tables = {each.table.name: each for each in rows}
        self.slot = slot_name(namespace)

    # -- the server's side: publication, replica identity, slot ------------------------

    async def _connection(self) -> AsyncConnection:
        conn = await self._store.engine.connect()
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("SET DateStyle = ISO"))
        return conn

    async def _run(self, work: Any) -> Any:
        """``work(conn)`` on an autocommit connection; the database's faults sorted."""
        try:
            conn = await self._connection()
            try:
                return await work(conn)
            finally:
                await conn.close()
        except (StoreUnavailable, *UNAVAILABLE) as error:
            raise ChangeLogUnavailable(f"logical decoding unavailable: {error}") from error

    async def _ensure(self, conn: AsyncConnection) -> None:
        """What decoding needs and only a follower wants: refused in one line if the server
        cannot decode; the publication and the tables' replica identity made as needed."""
        level = await conn.scalar(text("SHOW wal_level"))
        if level != "logical":
            raise FollowRefused(
                f"cannot follow this database: wal_level is {level} (set it to logical; on "
                "RDS and Aurora, rds.logical_replication = 1)"
            )
        await publish(conn, list(self._tables))

    async def _confirmed(self, conn: AsyncConnection) -> int | None:
        """Where the slot stands (None: there is no slot, or the server dropped its WAL)."""
        found = (
            await conn.execute(
                text(
                    "SELECT confirmed_flush_lsn::text, wal_status FROM pg_replication_slots "
                    "WHERE slot_name = :slot"
                ),
                {"slot": self.slot},
            )
        ).first()
        if found is None or found[0] is None or found[1] == "lost":
            return None
        return _lsn(found[0])

    async def prepare(self) -> None:
        async def work(conn: AsyncConnection) -> None:
            await self._ensure(conn)
            if await self._confirmed(conn) is None:
                await self._make_slot(conn)

        await self._run(work)

    async def now(self) -> str:
        async def work(conn: AsyncConnection) -> str:
            await self._ensure(conn)
            if await self._confirmed(conn) is None:
                return await self._make_slot(conn)
            moved = await conn.scalar(
                text(
                    "SELECT end_lsn::text FROM "
                    "pg_replication_slot_advance(:slot, pg_current_wal_lsn())"
                ),
                {"slot": self.slot},
            )
            return str(moved)

        return str(await self._run(work))

    async def _make_slot(self, conn: AsyncConnection) -> str:
        """The slot, made anew (a lost one dropped first): where it starts."""
        await conn.execute(
            text(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = :slot"
            ),
            {"slot": self.slot},
        )
        made = await conn.scalar(
            text("SELECT lsn::text FROM pg_create_logical_replication_slot(:slot, 'pgoutput')"),
            {"slot": self.slot},
        )
        return str(made)

    async def saved(self, position: str) -> None:
        """Let the server forget the WAL before ``position`` (the follower saved it), and
        report how much the slot still holds back."""

        async def work(conn: AsyncConnection) -> None:
            confirmed = await self._confirmed(conn)
            if confirmed is not None and _lsn(position) > confirmed:
                await conn.execute(
                    # Cast from text: asyncpg would send a pg_lsn parameter as a number.
                    text(
                        "SELECT pg_replication_slot_advance("
                        ":slot, CAST(CAST(:lsn AS text) AS pg_lsn))"
                    ),
                    {"slot": self.slot, "lsn": position},
                )
            retained = await conn.scalar(
                text(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) "
                    "FROM pg_replication_slots WHERE slot_name = :slot"
                ),
                {"slot": self.slot},
            )
            if retained is not None:
                FOLLOW_RETAINED.set(float(retained))

        await self._run(work)

    # -- reading -----------------------------------------------------------------------

    async def batches(self, position: str) -> AsyncGenerator[Batch, None]:
        after = _lsn(position)
        conn = await self._run(self._start(after))
        try:
            heard = time.monotonic()
            while True:
                transactions = await self._peek(conn, after)
                now = time.monotonic()
                for end, changes, committed_at in transactions:
                    after = end
                    yield Batch(tuple(changes), _lsn_text(end), committed_at)
                    heard = now
                if transactions:
                    continue  # there may be more: peek again at once
                if now - heard >= _HEARTBEAT:
                    yield Batch((), _lsn_text(after))
                    heard = now
                await asyncio.sleep(_POLL)
        finally:
            await conn.close()

    def _start(self, after: int) -> Any:
        async def work(conn: AsyncConnection) -> AsyncConnection:
            await self._ensure(conn)
            confirmed = await self._confirmed(conn)
            if confirmed is None or after < confirmed:
                # The slot is gone, or moved past the position (it only moves to saved
                # positions: this cache's position is older than one saved before).
                raise PositionLost(f"replication slot {self.slot} no longer holds {after:X}")
            return await self._connection()

        return work

    async def _peek(
        self, conn: AsyncConnection, after: int
    ) -> list[tuple[int, list[Change], float]]:
        """The transactions the slot holds that end after ``after``, decoded."""
        try:
            found = await conn.execute(
                text(
                    "SELECT data FROM pg_logical_slot_peek_binary_changes(:slot, NULL, :limit, "
                    "'proto_version', '1', 'publication_names', :publication)"
                ),
                {"slot": self.slot, "limit": _PEEK, "publication": PUBLICATION},
            )
            messages = [bytes(row[0]) for row in found]
        except (StoreUnavailable, *UNAVAILABLE) as error:
            raise ChangeLogUnavailable(f"logical decoding unavailable: {error}") from error
        decoder = _Decoder(self._tables)
        done = []
        for message in messages:
            finished = decoder.feed(message)
            if finished is not None and finished[0] > after:
                done.append(finished)
        if decoder.truncated:
            raise PositionLost(f"{', '.join(sorted(decoder.truncated))} truncated")
        return done

    async def close(self) -> None:
        return None


class _Decoder:
    """pgoutput's messages (protocol version 1) into row changes, one transaction at a
    time: Relation, Begin, Insert, Update, Delete, Truncate, Commit; others ignored."""

    def __init__(self, tables: dict[str, SQLRows]) -> None:
        self._tables = tables
        self._relations: dict[int, tuple[str, list[str]]] = {}
        self._changes: list[Change] = []
        self.truncated: set[str] = set()

    def feed(self, message: bytes) -> tuple[int, list[Change], float] | None:
        """Take one message; at a commit, the transaction: (end LSN, changes, commit time)."""
        kind, body = message[:1], memoryview(message)[1:]
        if kind == b"R":
            self._relation(body)
        elif kind == b"B":
            self._changes = []
        elif kind in (b"I", b"U", b"D"):
            self._row(kind, body)
        elif kind == b"T":
            (count,) = struct.unpack_from("!i", body, 0)
            for index in range(count):
                (oid,) = struct.unpack_from("!I", body, 5 + 4 * index)
                relation = self._relations.get(oid)
                if relation is not None and relation[0] in self._tables:
                    self.truncated.add(relation[0])
        elif kind == b"C":
            _flags, _commit, end, stamp = struct.unpack_from("!bQQq", body, 0)
            changes, self._changes = self._changes, []
            return end, changes, stamp / 1_000_000 + _EPOCH_2000
        return None

    def _relation(self, body: memoryview) -> None:
        (oid,) = struct.unpack_from("!I", body, 0)
        at = 4
        _namespace, at = _string(body, at)
        name, at = _string(body, at)
        at += 1  # replica identity setting
        (count,) = struct.unpack_from("!h", body, at)
        at += 2
        columns = []
        for _ in range(count):
            at += 1  # flags
            column, at = _string(body, at)
            at += 8  # type oid, type modifier
            columns.append(column)
        self._relations[oid] = (name, columns)

    def _row(self, kind: bytes, body: memoryview) -> None:
        (oid,) = struct.unpack_from("!I", body, 0)
        table, columns = self._relations[oid]
        rows = self._tables.get(table)
        at = 4
        old: dict[str, str | None] | None = None
        new: dict[str, str | None] | None = None
        marker = bytes(body[at : at + 1])
        if marker in (b"K", b"O"):
            old, at = _tuple(body, at + 1, columns)
            marker = bytes(body[at : at + 1])
        if marker == b"N":
            new, at = _tuple(body, at + 1, columns, old)
        if rows is None:
            return
        before = _record(rows, old) if old is not None else None
        after = _record(rows, new) if new is not None else None
        self._changes.append(Change(rows.resource.name, before, after))


def _string(body: memoryview, at: int) -> tuple[str, int]:
    end = bytes(body[at:]).index(b"\0")
    return bytes(body[at : at + end]).decode(), at + end + 1


def _tuple(
    body: memoryview, at: int, columns: list[str], old: dict[str, str | None] | None = None
) -> tuple[dict[str, str | None], int]:
    (count,) = struct.unpack_from("!h", body, at)
    at += 2
    values: dict[str, str | None] = {}
    for index in range(count):
        kind = bytes(body[at : at + 1])
        at += 1
        name = columns[index]
        if kind == b"t":
            (length,) = struct.unpack_from("!i", body, at)
            at += 4
            values[name] = bytes(body[at : at + length]).decode()
            at += length
        elif kind == b"u":  # an unchanged TOASTed value: the old row has it
            values[name] = (old or {}).get(name)
        else:  # b"n": NULL
            values[name] = None
    return values, at


def _record(rows: SQLRows, values: dict[str, str | None]) -> Record:
    """A row from pgoutput's text values, typed as the resource declares its fields."""
    resource = rows.resource
    typed: dict[str, Any] = {}
    for name in resource.columns:
        raw = values.get(name)
        typed[name] = None if raw is None else _typed(resource.field(name), raw)
    version = values.get(VERSION)
    return Record(typed[resource.key], typed, int(version or 0))


def _typed(spec: object, raw: str) -> Any:
    if isinstance(spec, BooleanField):
        return raw == "t"
    if isinstance(spec, IntegerField):
        return int(raw)
    if isinstance(spec, NumberField):
        return float(raw)
    if isinstance(spec, TimestampField):
        return datetime.fromisoformat(raw).astimezone(UTC)
    return raw
