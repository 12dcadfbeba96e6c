"""PostgreSQL and Aurora PostgreSQL: logical decoding from a replication slot.

The slot decodes with ``pgoutput``, PostgreSQL's own plugin (no extension to install, on
every server since 10 and on RDS and Aurora), for the tables of a publication twotier
keeps (``twotier``: the declared tables, each with ``REPLICA IDENTITY FULL`` so that an
update or deletion carries the row as it was, whose lookup values the follower moves).

It is streamed over the replication protocol (``START_REPLICATION``, psycopg2's
replication connection: no async driver speaks it) on a thread of its own (``threaded``):
each commit arrives as the server decodes it. Chosen by measurement over polling
``pg_logical_slot_peek_binary_changes``, which twotier did first
(``benchmarks/pg_decoding.py``: at 200 commits/s, streaming delivers at p50 0.08 ms and
p99 2.7 ms with an eighth of the server's CPU; polling every 50 ms, 25 ms and 58 ms, and
every poll decodes again from the slot's start). The stream confirms to the server only
positions the follower has saved (``saved``), so a follower that dies resumes from its
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
import select
import struct
import threading
import time
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, date, datetime
from datetime import time as time_of_day
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from twotier.errors import ChangeLogUnavailable, FollowRefused, PositionLost, StoreUnavailable
from twotier.follow.changes import Batch, Change
from twotier.follow.threaded import HandOver, read_on_thread
from twotier.resources import Record
from twotier.resources.fields import (
    BinaryField,
    BooleanField,
    DateField,
    DecimalField,
    IntegerField,
    JsonField,
    LocalDateTimeField,
    NumberField,
    StringField,
    TimeField,
    TimestampField,
    UuidField,
)
from twotier.store.sql import SQLStore
from twotier.store.sql_errors import unavailable
from twotier.store.sql_follower import PUBLICATION, publish
from twotier.store.sql_rows import SQLRows
from twotier.store.sql_statement import VERSION
from twotier.telemetry import FOLLOW_RETAINED

_HEARTBEAT = 1.0  # seconds between batches without changes
_WAKE = 0.2  # at most how long the reading thread waits before it checks for a stop
_FEEDBACK = 1.0  # seconds between the saved positions' confirmations to the server
_RELEASE = 5.0  # seconds a stream that just ended may keep holding the slot
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
        #: The newest position the follower saved: what the stream may confirm.
        self._flush_to = 0
        #: The WAL end the driver may confirm on its own (``settled``): set by the reading
        #: thread while every message it received is confirmed, between transactions.
        self._quiet_end = 0

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
        except unavailable(StoreUnavailable) as error:
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

    async def _released(self, conn: AsyncConnection) -> int | None:
        """Where the slot stands once no stream holds it (one that just ended lets go of it
        a moment later); ChangeLogUnavailable if another reader keeps it."""
        deadline = time.monotonic() + _RELEASE
        while await conn.scalar(
            text("SELECT active FROM pg_replication_slots WHERE slot_name = :slot"),
            {"slot": self.slot},
        ):
            if time.monotonic() > deadline:
                raise ChangeLogUnavailable(f"replication slot {self.slot} is held by another")
            await asyncio.sleep(0.05)
        return await self._confirmed(conn)

    async def now(self) -> str:
        async def work(conn: AsyncConnection) -> str:
            await self._ensure(conn)
            if await self._released(conn) is None:
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

    def settled(self, position: str) -> str:
        """``position``, or past it the WAL end psycopg2 confirmed to the server on its
        own: it does so on a keepalive once every message received is confirmed (so over
        WAL carrying nothing followed), which a follower stopped between two heartbeats had
        not saved yet; a restart would find the slot past its position, and empty the
        cache as if the position were lost."""
        return _lsn_text(max(_lsn(position), self._quiet_end))

    async def saved(self, position: str) -> None:
        """Let the server forget the WAL before ``position`` (the follower saved it: the
        stream confirms it to the server), and report how much the slot still holds back."""
        self._flush_to = max(self._flush_to, _lsn(position))

        async def work(conn: AsyncConnection) -> None:
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
        await self._run(self._check_position(after))
        # The position was saved: the server may forget what comes before it.
        self._flush_to = after

        def read(hand_over: HandOver, stop: threading.Event) -> None:
            self._stream(after, hand_over, stop)

        async for batch in read_on_thread(read, "pg-logical", _WAKE):
            yield batch

    def _check_position(self, after: int) -> Any:
        async def work(conn: AsyncConnection) -> None:
            await self._ensure(conn)
            confirmed = await self._released(conn)
            if confirmed is None or after < confirmed:
                # The slot is gone, or moved past the position (it only moves to saved
                # positions: this cache's position is older than one saved before).
                raise PositionLost(f"replication slot {self.slot} no longer holds {after:X}")

        return work

    def _stream(self, after: int, hand_over: HandOver, stop: threading.Event) -> None:
        """The reading thread: the slot's changes streamed from ``after``, one batch per
        committed transaction, a heartbeat batch every ``_HEARTBEAT`` while quiet; the
        saved position confirmed to the server as the follower saves it."""
        import psycopg2
        from psycopg2.extras import LogicalReplicationConnection

        url = self._store.url
        try:
            conn = psycopg2.connect(
                host=url.host or "127.0.0.1",
                port=url.port or 5432,
                user=url.username,
                password=url.password,
                dbname=url.database,
                # A server that does not answer fails the attempt (retried with a backoff)
                # instead of holding this thread for the kernel's TCP timeout.
                connect_timeout=max(1, round(self._store.timeout)),
                connection_factory=LogicalReplicationConnection,
                options=" ".join(f"-c {k}={v}" for k, v in self._store.server_settings.items())
                or None,
                **self._store.tls_parameters,
            )
        except psycopg2.Error as error:
            hand_over(ChangeLogUnavailable(f"logical decoding unavailable: {error}"))
            return
        try:
            cursor = conn.cursor()
            cursor.start_replication(
                slot_name=self.slot,
                decode=False,
                start_lsn=after,
                status_interval=_FEEDBACK,
                options={"proto_version": "1", "publication_names": PUBLICATION},
            )
            decoder = _Decoder(self._tables)
            heard = time.monotonic()
            last_start = 0  # the last message's WAL start, as psycopg2 keeps it
            self._quiet_end = 0
            while not stop.is_set():
                # Only what the follower saved: psycopg2 sends it every _FEEDBACK seconds.
                cursor.send_feedback(flush_lsn=self._flush_to)
                message = cursor.read_message()
                if message is not None:
                    last_start = message.data_start
                elif self._flush_to >= last_start and not decoder.in_transaction:
                    # psycopg2's own condition to confirm a keepalive's WAL end.
                    self._quiet_end = max(self._quiet_end, cursor.wal_end)
                now = time.monotonic()
                if message is None:
                    if now - heard >= _HEARTBEAT:
                        # Caught up, between transactions: the WAL sent since carried
                        # nothing followed, and psycopg2 confirms its end to the server on
                        # its own (keepalives), so the position saved moves there too; else
                        # a restart would find the slot past it and take it for lost.
                        if not decoder.in_transaction:
                            after = max(after, cursor.wal_end)
                        hand_over(Batch((), _lsn_text(after)))
                        heard = now
                    select.select([cursor], [], [], _WAKE)
                    continue
                finished = decoder.feed(bytes(message.payload))
                if decoder.truncated:
                    truncated = ", ".join(sorted(decoder.truncated))
                    hand_over(PositionLost(f"{truncated} truncated"))
                    return
                if finished is not None and finished[0] > after:
                    after, changes, committed_at = finished
                    hand_over(Batch(tuple(changes), _lsn_text(after), committed_at))
                    heard = now
            cursor.send_feedback(flush_lsn=self._flush_to, force=True)
        except psycopg2.Error as error:
            hand_over(ChangeLogUnavailable(f"logical decoding unavailable: {error}"))
        finally:
            conn.close()

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
        #: A transaction's Begin came, its Commit not yet.
        self.in_transaction = False

    def feed(self, message: bytes) -> tuple[int, list[Change], float] | None:
        """Take one message; at a commit, the transaction: (end LSN, changes, commit time)."""
        kind, body = message[:1], memoryview(message)[1:]
        if kind == b"R":
            self._relation(body)
        elif kind == b"B":
            self._changes = []
            self.in_transaction = True
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
            self.in_transaction = False
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
    return resource.record(typed, int(version or 0))


def _typed(spec: object, raw: str) -> Any:
    if isinstance(spec, BooleanField):
        return raw == "t"
    if isinstance(spec, IntegerField):
        return int(raw)
    if isinstance(spec, NumberField):
        return float(raw)
    if isinstance(spec, DecimalField):
        return spec.stored(raw)
    if isinstance(spec, TimestampField):
        return datetime.fromisoformat(raw).astimezone(UTC)
    if isinstance(spec, LocalDateTimeField):
        return datetime.fromisoformat(raw)
    if isinstance(spec, DateField):
        return date.fromisoformat(raw)
    if isinstance(spec, TimeField):
        return time_of_day.fromisoformat(raw)
    if isinstance(spec, UuidField):
        return raw.lower()
    if isinstance(spec, JsonField):
        return orjson.loads(raw)
    if isinstance(spec, BinaryField):
        return bytes.fromhex(raw.removeprefix("\\x"))  # bytea's text form: \x and hex
    if isinstance(spec, StringField):
        return spec.read(raw)
    return raw
