"""MySQL, MariaDB and Aurora MySQL: the binary log, read as a replica reads it.

python-mysql-replication speaks the replication protocol (a blocking PyMySQL connection),
so the log is read on a thread of its own (``threaded``), which hands each committed
transaction's row changes to the event loop.

The server must log rows whole: ``binlog_format=ROW`` and ``binlog_row_image=FULL`` (the
old and new values of every column, which the follower needs to move the old and new
lookup generations). Column names come from the log itself with
``binlog_row_metadata=FULL`` (MySQL 8.0.14+, MariaDB 10.5+); without it they are read from
``information_schema`` as the table is now. The user needs ``REPLICATION SLAVE`` and
``REPLICATION CLIENT`` (``REPLICATION REPLICA``/``BINLOG MONITOR`` on MariaDB).

A position is ``FILE:OFFSET``, always just after a commit: a follower that stops
mid-transaction starts again with that transaction whole.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import HeartbeatLogEvent, QueryEvent, XidEvent
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent
from sqlalchemy import exc, text

from twotier.errors import ChangeLogUnavailable, FollowRefused, PositionLost
from twotier.follow.changes import Batch, Change
from twotier.follow.threaded import HandOver, read_on_thread
from twotier.store.sql import SQLStore
from twotier.store.sql_rows import SQLRows

#: The server's error for a position its binary logs no longer hold (purged, or never was).
_POSITION_GONE = 1236
#: Seconds between the server's heartbeats while nothing is written: how soon a stop or a
#: lost link is noticed when the log is quiet.
_HEARTBEAT = 1.0
#: Seconds a read of the log may wait (several heartbeats).
_READ_TIMEOUT = 5.0


class BinlogChangeLog:
    name = "mysql binlog"

    def __init__(
        self, store: SQLStore, rows: Sequence[SQLRows], server_id: int | None = None
    ) -> None:
        self._store = store
        url = store.url
        self._settings: dict[str, Any] = {
            "host": url.host or "127.0.0.1",
            "port": url.port or 3306,
            "user": url.username or "root",
            "password": url.password or "",
            "connect_timeout": store.timeout,
            # The server sends a heartbeat every second while the log is quiet: a read that
            # waits longer than a few is on a link that is gone (half-open), and would wait
            # for ever without this.
            "read_timeout": _READ_TIMEOUT,
        }
        if store.tls is not None:
            self._settings["ssl"] = store.tls
        self._schema = url.database
        self._tables = {each.table.name: each for each in rows}
        # A replica's id, unique among the server's replicas (two with one id evict each
        # other): random unless given.
        self._server_id = server_id or random.randrange(1 << 20, 1 << 31)
        self._names_from_log = True

    async def _check(self) -> None:
        """Refuse a server whose log the follower cannot use, saying what to set."""
        async with self._store.connect() as conn:  # faults as StoreUnavailable
            found = (
                await conn.execute(
                    text(
                        "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, "
                        "@@lower_case_table_names"
                    )
                )
            ).one()
            try:
                metadata = await conn.scalar(text("SELECT @@binlog_row_metadata"))
            except exc.DBAPIError:  # an older server has no such variable: names from schema
                metadata = None
        log_bin, row_format, image, folded = found
        if int(folded or 0):  # the log names tables in lower case (sql_names)
            self._tables = {name.lower(): rows for name, rows in self._tables.items()}
        wrong = []
        if not int(log_bin):
            wrong.append("log_bin is off (start the server with --log-bin)")
        if str(row_format).upper() != "ROW":
            wrong.append(f"binlog_format is {row_format} (set it to ROW)")
        if str(image).upper() != "FULL":
            wrong.append(f"binlog_row_image is {image} (set it to FULL)")
        if wrong:
            raise FollowRefused("cannot follow this database's binary log: " + "; ".join(wrong))
        self._names_from_log = str(metadata or "").upper() == "FULL"

    async def prepare(self) -> None:
        await self._check()  # the server keeps the log itself: nothing to make

    async def now(self) -> str:
        await self._check()
        async with self._store.connect() as conn:
            status = (await conn.execute(text("SHOW MASTER STATUS"))).first()
        if status is None:
            raise FollowRefused("cannot follow: the server keeps no binary log (--log-bin)")
        return f"{status[0]}:{status[1]}"

    async def batches(self, position: str) -> AsyncGenerator[Batch, None]:
        await self._check()

        def read(hand_over: HandOver, stop: threading.Event) -> None:
            self._read(position, hand_over, stop)

        async for batch in read_on_thread(read, "binlog", _HEARTBEAT):
            yield batch

    def _read(self, position: str, hand_over: HandOver, stop: threading.Event) -> None:
        """The reading thread: one batch per committed transaction, a heartbeat batch when
        the server says the log is quiet; the error that ended it as the last item."""
        log_file, _, offset = position.rpartition(":")
        stream = None
        try:
            stream = BinLogStreamReader(
                connection_settings=self._settings,
                server_id=self._server_id,
                resume_stream=True,
                blocking=True,
                log_file=log_file,
                log_pos=int(offset),
                only_events=[
                    WriteRowsEvent,
                    UpdateRowsEvent,
                    DeleteRowsEvent,
                    XidEvent,
                    QueryEvent,
                    HeartbeatLogEvent,
                ],
                only_schemas=[self._schema] if self._schema else None,
                only_tables=list(self._tables),
                slave_heartbeat=_HEARTBEAT,
                use_column_name_cache=not self._names_from_log,
                enable_logging=False,
            )
            pending: list[Change] = []
            for event in stream:
                if stop.is_set():
                    return
                if isinstance(event, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
                    pending.extend(self._changes(event))
                elif isinstance(event, XidEvent) or (
                    isinstance(event, QueryEvent) and event.query.strip().upper() == "COMMIT"
                ):
                    at = f"{stream.log_file}:{stream.log_pos}"
                    position = at
                    hand_over(Batch(tuple(pending), at, float(event.timestamp)))
                    pending = []
                elif isinstance(event, HeartbeatLogEvent) and not pending:
                    hand_over(Batch((), position))
        except pymysql.err.OperationalError as error:
            code = error.args[0] if error.args else None
            if code == _POSITION_GONE:
                hand_over(PositionLost(f"binary log position {position} is gone: {error}"))
            else:
                hand_over(ChangeLogUnavailable(f"binary log unreadable: {error}"))
        except (pymysql.err.MySQLError, OSError) as error:
            hand_over(ChangeLogUnavailable(f"binary log unreadable: {error}"))
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()

    def _changes(self, event: Any) -> list[Change]:
        rows = self._tables.get(event.table)
        if rows is None:
            return []
        name = rows.resource.name
        changes = []
        for row in event.rows:
            if isinstance(event, UpdateRowsEvent):
                before = rows.from_log(row["before_values"])
                after = rows.from_log(row["after_values"])
                changes.append(Change(name, before, after))
            elif isinstance(event, WriteRowsEvent):
                changes.append(Change(name, None, rows.from_log(row["values"])))
            else:
                changes.append(Change(name, rows.from_log(row["values"]), None))
        return changes

    def settled(self, position: str) -> str:
        return position  # the binary log moves only as it is read

    async def saved(self, position: str) -> None:
        return None  # the log keeps its own retention, whoever follows

    async def close(self) -> None:
        return None
