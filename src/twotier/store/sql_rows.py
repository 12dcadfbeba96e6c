"""One resource's rows in a SQL database: reads, writes and bulk loads, built from its table.

A write of one row reads it, then changes it only if it is still at the version read (a
compare-and-set on the version column); after three lost races it locks the row instead
(``SELECT … FOR UPDATE``; on SQLite ``BEGIN IMMEDIATE``). Either way each returns the row as
it was before and after, concurrent writes of one row each land once (no lost version
bumps), and a conditional write (``expected``) is checked against the version it changes.
A write of many rows is one transaction.

What runs per request (a row by key, a lookup, the writes of one row) goes through
``sql_driver``'s compiled statements on the driver's own pool; the rest (writes of many rows,
pages, bulk loads) through the SQLAlchemy engine. Each statement is asked for by its shape
(``_statement``): one kept from the database's book of statements compiled ahead
(``SQLStore``'s), else built (``sql_row_statements``) and compiled on first use; so a
process whose every statement is in the book never imports SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from uuid import UUID

from twotier.batching import TickBatcher
from twotier.errors import (
    DuplicateKey,
    KeyNotUnique,
    StoreRefused,
    StoreUnavailable,
    VersionMismatch,
)
from twotier.resources import Key, Record, Resource
from twotier.resources.fields import StringField, TimestampField
from twotier.store.base import LoadRows, Query
from twotier.store.sql_driver import Database, Driver, Session
from twotier.store.sql_errors import describe, refusal, unavailable
from twotier.store.sql_statement import (
    AT,
    KEY,
    LIMIT,
    VERSION,
    Conversion,
    Statement,
    by_name,
    converted,
    named,
)
from twotier.telemetry import DatabaseTimer
from twotier.versions import birth_version

if TYPE_CHECKING:  # SQLAlchemy's, imported where a statement is built
    from sqlalchemy import Table
    from sqlalchemy.engine import Dialect
    from sqlalchemy.ext.asyncio import AsyncConnection

    from twotier.store.sql_row_statements import RowStatements


class RowsDatabase(Database, Protocol):
    """What a resource's rows need of the store that made them (``SQLStore``) besides what
    the driver does: the driver, the dialect, a resource's table, the foreign keys that
    point at a table, the tables whose rows the database rewrites as they are written."""

    driver: Driver

    @property
    def dialect(self) -> Dialect: ...

    def table_of(self, resource: Resource) -> Table: ...

    @property
    def insert_returning(self) -> bool: ...

    async def referencing(self, table: str) -> list[str]: ...

    async def rewriting_tables(self) -> set[str]: ...


#: Compare-and-set attempts of a write before it takes the row's lock instead.
_OPTIMISTIC_TRIES = 3
#: The ``IN`` lists kept in the book: one per power of two up to this many values (a
#: batch event's lookups, the reads of several keys).
_KEPT_SIZES = tuple(1 << power for power in range(7))

# Values per IN (...) list: well under every dialect's bound-parameter limit.
_IN_CHUNK = 1024
# Rows per multi-row INSERT of concurrent POSTs, and per UPDATE … FROM (VALUES …).
_ROWS_PER_STATEMENT = 64

#: One compare-and-set: the key, the changes, the version the row must still be at.
_Set = tuple[Key, dict[str, Any], int]
T = TypeVar("T")


class _Again:
    """An optimistic write's answer when the row moved under it: try again."""


AGAIN = _Again()


def _lost_a_lock(error: StoreUnavailable) -> bool:
    """MySQL's deadlock (1213) or lock wait timeout (1205): the transaction was undone, the
    database is there."""
    cause = error.__cause__
    return bool(cause is not None and cause.args and cause.args[0] in (1205, 1213))


async def _answer(call: Awaitable[T]) -> T | Exception:
    """What one write of a batch made alone comes to: its result, or the error the database
    gave it, handed to that write's caller alone (``TickBatcher``)."""
    try:
        return await call
    except Exception as refused:
        return refused


class SQLRows:
    lookup_lag: float = 0.0  # lookups read the table, in the same transaction as anything else
    pages_in_order = True
    batch_limit: int | None = None

    def __init__(self, resource: Resource, db: RowsDatabase) -> None:
        self.resource = resource
        self._db = db
        self._keys = resource.key_fields
        self._names = resource.columns
        # Columns whose values the database hands back in its own form (naive datetimes).
        self._timestamps = tuple(
            index
            for index, name in enumerate(resource.columns)
            if isinstance(resource.field(name), TimestampField)
        )
        self._timestamp_names = tuple(resource.columns[index] for index in self._timestamps)
        # CHAR columns' values, padded with spaces by the database: read without them.
        self._padded = tuple(
            (index, spec)
            for index, name in enumerate(resource.columns)
            if isinstance(spec := resource.field(name), StringField) and spec.fixed
        )
        self._stored_naive = db.backend != "postgresql"  # MySQL and SQLite keep no zone
        self._driver = db.driver
        inserted = [name for name in self._names if name != resource.key or not resource.auto_key]
        self._inserted_names = (*inserted, VERSION)
        # Statements by shape: kept from the book, or compiled on first use.
        self._statements: dict[str, Statement] = {}
        self._constructs: RowStatements | None = None
        self._processors: tuple[Conversion, ...] | None = None
        # The POSTs of one turn of the event loop, inserted by one statement.
        self._creates: TickBatcher[dict[str, Any], tuple[Key, int]] = TickBatcher(
            self._insert_together
        )
        self._tickets = itertools.count()
        # The reads a write starts with (its compare-and-set's version), of one loop turn:
        # one SELECT … IN for the lot.
        self._current_rows: TickBatcher[Key, Record | None] = TickBatcher(self._read_together)
        # Their compare-and-sets (``_set_together``).
        self._sets: TickBatcher[_Set, bool] = TickBatcher(self._set_together)
        self._rewriting: bool | None = None  # learned at start, else on the first write
        self._asking: asyncio.Future[bool] | None = None

    @property
    def table(self) -> Table:
        return self._db.table_of(self.resource)

    def _made(self) -> RowStatements:
        """The constructs of this resource's statements (SQLAlchemy's), made on first use."""
        if self._constructs is None:
            from twotier.store.sql_row_statements import RowStatements

            self._constructs = RowStatements(self.resource, self.table, self._db.backend)
        return self._constructs

    def _statement(self, shape: str, build: Callable[[RowStatements], Any]) -> Statement:
        """The statement of ``shape``: kept, or built by ``build`` and compiled for the
        store's dialect as it is now (what the database supports, such as MariaDB's
        RETURNING, is known once the engine has connected)."""
        statement = self._statements.get(shape)
        if statement is None:
            made = self._made()
            statement = self._statements[shape] = made.compile(build(made), self._db.dialect)
        return statement

    @property
    def _conversions(self) -> tuple[Conversion, ...]:
        """How a row's values are converted from the driver's forms (``sql_compile``)."""
        if self._processors is None:
            self._processors = self._made().row_conversions(self._db.dialect)
        return self._processors

    # -- the book: the common statements, compiled ahead -------------------------------

    def book(self) -> dict[str, Any]:
        """The statements a process serving this resource runs first (a read by key and
        of a few keys, a lookup, a POST, a PUT, a DELETE), compiled now, with the row's
        conversions, as data to keep; what cannot be kept (a SQLite dialect's conversion)
        is left out, and compiled on first use."""
        everything = frozenset(spec.name for spec in self.resource.changeable)
        self._by_key()
        self._locked()
        self._deleted(at=False)
        self._deleted(at=True)
        self._insert_named(frozenset(self._inserted_names))
        self._setter(everything, conditional=False)
        self._setter(everything, conditional=True)
        for size in _KEPT_SIZES:
            self._among_keys(size)
            for field in self.resource.lookups:
                self._among_values(field, size, limited=False)
                self._among_values(field, size, limited=True)
        kept = {shape: data for shape, s in self._statements.items() if (data := s.kept())}
        row = named(self._conversions)
        return {"statements": kept, "row": row} if row is not None else {}

    def keep(self, book: Mapping[str, Any]) -> None:
        """Take the statements of ``book`` (``book()``'s answer, kept) as compiled."""
        kept = book.get("statements", {})
        self._statements |= {shape: Statement.from_kept(data) for shape, data in kept.items()}
        if "row" in book:
            self._processors = by_name(book["row"])

    # -- rows as the tiers see them -----------------------------------------------------

    def _record(self, row: Sequence[Any]) -> Record:
        values = list(row)
        version = values.pop()
        for index in self._timestamps:
            moment = values[index]
            if moment is not None:
                values[index] = (
                    moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
                )
        for index, spec in self._padded:
            values[index] = spec.read(values[index])
        named = dict(zip(self._names, values, strict=True))
        return Record(self.resource.key_of(named), named, version)

    def _stored(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Values as this database takes them (datetimes: naive UTC where it keeps no zone)."""
        if not self._timestamps or not self._stored_naive:
            return dict(values)
        stored = dict(values)
        for name in self._timestamp_names:
            value = values.get(name)
            if isinstance(value, datetime):
                stored[name] = value.astimezone(UTC).replace(tzinfo=None)
        return stored

    def _raw_record(self, row: tuple[Any, ...]) -> Record:
        """A row as the driver hands it over (``sql_driver``), converted, as a Record."""
        return self._record(converted(row, self._conversions))

    def from_log(self, values: Mapping[str, Any]) -> Record:
        """A row as a change log records it (column names to the driver's values; columns
        not declared ignored), as a Record. MySQL's binary log spells the names as the
        table does, which may differ in case from the declaration's (``sql_names``)."""
        names = (*self._names, VERSION)
        try:
            return self._raw_record(tuple(values[name] for name in names))
        except KeyError:
            folded = {name.lower(): value for name, value in values.items()}
            return self._raw_record(tuple(folded[name.lower()] for name in names))

    def _key_bound(self, name: str, key: Key) -> dict[str, Any]:
        """``key``'s values, bound under ``name`` as a statement's key condition takes them
        (a composite key's parts as ``name_0``, ``name_1`` …: ``RowStatements._key_is``)."""
        if len(self._keys) == 1:
            return {name: key}
        values = self.resource.key_values(key)
        return {f"{name}_{index}": values[part] for index, part in enumerate(self._keys)}

    def _row_key(self, row: Sequence[Any]) -> Key:
        """The key of a row that starts with the key's columns."""
        # asyncpg hands a UUID over as an object; twotier keys it by its text.
        values = [str(v) if isinstance(v, UUID) else v for v in row[: len(self._keys)]]
        if len(self._keys) == 1:
            key: Key = values[0]
            return key
        return self.resource.key_of(dict(zip(self._keys, values, strict=True)))

    # -- reads --------------------------------------------------------------------------

    async def get(self, key: Key) -> Record | None:
        return self._one(
            key, await self._driver.fetch_all(self._by_key(), self._key_bound(KEY, key))
        )

    def _one(self, key: Key, rows: Sequence[tuple[Any, ...]]) -> Record | None:
        """The row read by ``key``; KeyNotUnique if there were several (``init_schema``
        refuses a key that is not unique, and each write checks here, before it changes
        anything, that the table has not lost that since)."""
        if len(rows) > 1:
            raise KeyNotUnique(self.resource.table, key)
        return self._raw_record(rows[0]) if rows else None

    async def get_many(self, keys: Sequence[Key]) -> dict[Key, Record]:
        """The rows among ``keys``, on the driver, ``_IN_CHUNK`` keys a statement."""
        if len(keys) == 1:
            record = await self.get(keys[0])
            return {record.key: record} if record is not None else {}
        found: dict[Key, Record] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _IN_CHUNK):
            chunk = unique[start : start + _IN_CHUNK]
            # Counts rounded up to a power of two (the last key repeated): a dozen
            # statements serve every count up to the chunk's.
            size = 1 << (len(chunk) - 1).bit_length()
            statement = self._among_keys(size)
            values: dict[str, Any] = {}
            for index in range(size):
                values |= self._key_bound(f"k{index}", chunk[min(index, len(chunk) - 1)])
            for row in await self._driver.fetch_all(statement, values):
                record = self._raw_record(row)
                if record.key in found:
                    raise KeyNotUnique(self.resource.table, record.key)
                found[record.key] = record
        return found

    def _by_key(self) -> Statement:
        return self._statement("by_key", lambda made: made.by_key())

    def _locked(self) -> Statement:
        return self._statement("locked", lambda made: made.by_key(locked=True))

    def _among_keys(self, count: int) -> Statement:
        return self._statement(f"among_keys:{count}", lambda made: made.among_keys(count))

    async def lookup(
        self, field: str, values: Sequence[Any], limit: int | None = None
    ) -> dict[Any, list[Record]]:
        """On the driver, ``_IN_CHUNK`` values a statement: each value's rows are read by
        one statement, so each comes from one moment of the table."""
        found: dict[Any, list[Record]] = {value: [] for value in values}
        unique = sorted(found)
        left = limit
        for start in range(0, len(unique), _IN_CHUNK):
            chunk = unique[start : start + _IN_CHUNK]
            size = 1 << (len(chunk) - 1).bit_length()  # as in get_many
            bound: dict[str, Any] = {
                f"v{index}": chunk[min(index, len(chunk) - 1)] for index in range(size)
            }
            if left is not None:
                bound[LIMIT] = left
            statement = self._among_values(field, size, limited=left is not None)
            for row in await self._driver.fetch_all(statement, bound):
                record = self._raw_record(row)
                found[record.values[field]].append(record)
                if left is not None:
                    left -= 1
            if left == 0:
                break
        return found

    def _among_values(self, field: str, count: int, *, limited: bool) -> Statement:
        return self._statement(
            f"among_values:{field}:{count}:{int(limited)}",
            lambda made: made.among_values(field, count, limited=limited),
        )

    async def find(self, query: Query) -> list[Record]:
        async with self._db.connect() as conn:
            rows = (await conn.execute(self._made().page(query))).all()
        return [self._record(row) for row in rows]

    async def count(self) -> int:
        async with self._db.connect() as conn:
            return int(await conn.scalar(self._made().count()) or 0)

    # -- writes -------------------------------------------------------------------------

    async def create_many(self, rows: Sequence[Mapping[str, Any]]) -> list[Record]:
        """Insert all rows in one transaction (all or nothing) and return them with keys."""
        if not rows:
            return []
        version = birth_version()
        values = [self._stored(row) | {VERSION: version} for row in rows]
        # A field the database fills, left out: the rows as stored tell its value.
        left = any(len(row) < len(self._inserted_names) for row in values)
        if len(values) == 1:  # a POST: one statement with the others of its loop turn
            key, version = await self._insert_single(values[0])
            return await self._as_kept([self._created(key, rows[0], version)], read=left)
        try:
            async with self._db.connect(write=True) as conn:
                keys = await self._insert(conn, values)
        except Exception as error:
            refused = refusal(error)
            if refused is not None:
                raise refused from None
            raise
        made = [self._created(key, row, version) for key, row in zip(keys, rows, strict=True)]
        return await self._as_kept(made, read=left)

    async def _as_kept(self, records: list[Record], *, read: bool = False) -> list[Record]:
        """``records`` as the database keeps them after a write: read again where the
        table's own triggers (or MySQL's ``ON UPDATE``) may have changed what was written
        (a ``last_update`` set to now), or where the database filled what a new row left
        out (``read``), so that what is cached is what is stored."""
        if not records or not (read or await self._rewrites()):
            return records
        found = await self.get_many([record.key for record in records])
        return [found.get(record.key, record) for record in records]

    async def _rewrites(self) -> bool:
        """Whether the database may change a row as it is written: known from the store's
        start (``SQLStore.learn``), else asked of the catalogue once, however many writes
        ask at once."""
        if self._rewriting is None:
            if self._asking is None:
                self._asking = asyncio.ensure_future(self._ask_rewrites())
            try:
                self._rewriting = await asyncio.shield(self._asking)
            finally:
                asking = self._asking
                if asking.done() and (asking.cancelled() or asking.exception() is not None):
                    self._asking = None  # a failed question is asked again next time
        return self._rewriting

    async def _ask_rewrites(self) -> bool:
        return self.rewritten_among(await self._db.rewriting_tables())

    def rewritten_among(self, tables: set[str]) -> bool:
        """Learn from the tables the database rewrites rows of (``sql_triggers``) whether
        this one is among them (names as the catalogue spells them: MySQL's and SQLite's
        in any case); the answer."""
        name = self.resource.table
        self._rewriting = name in tables or name.lower() in {t.lower() for t in tables}
        return self._rewriting

    def _created(self, key: Key, row: Mapping[str, Any], version: int) -> Record:
        """A new row as written (a field the database fills, left out, as None until the
        row is read again: ``_as_kept``)."""
        named = {name: key if name == self.resource.key else row.get(name) for name in self._names}
        return Record(key, named, version)

    # Concurrent POSTs, one statement: a single-row INSERT each cost its own round trip, the
    # driver's per-statement work and the database's commit (profiled: the driver was a
    # sixth of a POST). Gathered per turn of the loop, as the misses are (``batching``).

    async def _insert_single(self, values: dict[str, Any]) -> tuple[Key, int]:
        """Insert one row, with whatever other rows are inserted in this loop turn; its key
        and its version."""
        # Together where the database says which key each row took (RETURNING: PostgreSQL,
        # MariaDB, SQLite; known once connected), or the keys are the clients': not on
        # MySQL proper, whose ids of one multi-row insert may interleave with others'.
        if self.resource.auto_key and not self._db.insert_returning:
            return await self._insert_alone(values)
        if len(values) < len(self._inserted_names):  # some left to the database: its own
            return await self._insert_alone(values)
        return await self._creates.load(str(next(self._tickets)), values)

    async def _insert_alone(self, values: Mapping[str, Any]) -> tuple[Key, int]:
        async with self._driver.autocommitted() as session:
            return await self._insert_one(session, values), int(values[VERSION])

    async def _insert_together(
        self, wanted: Mapping[str, dict[str, Any]]
    ) -> dict[str, tuple[Key, int] | Exception]:
        """The rows of one loop turn, ``_ROWS_PER_STATEMENT`` a statement, each statement all or
        nothing; a statement the database refuses (a taken key, a value it will not keep)
        is undone and its rows inserted one by one, so that each POST gets its own answer."""
        # Distinct versions (a microsecond apart at most), so each returned row names its POST.
        taken: set[int] = set()
        rows: list[tuple[str, dict[str, Any]]] = []
        for name, values in wanted.items():
            version = int(values[VERSION])
            while version in taken:
                version += 1
            taken.add(version)
            rows.append((name, values | {VERSION: version}))
        outcome: dict[str, tuple[Key, int] | Exception] = {}
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start : start + _ROWS_PER_STATEMENT]
            if len(chunk) == 1:
                name, values = chunk[0]
                outcome[name] = await _answer(self._insert_alone(values))
                continue
            bound = {
                f"r{index}_{column}": values[column]
                for index, (_, values) in enumerate(chunk)
                for column in self._inserted_names
            }
            try:
                async with self._driver.autocommitted() as session:
                    returned = await session.fetch_all(self._insert_rows(len(chunk)), bound)
            except StoreUnavailable:
                raise
            except Exception:  # each row alone then says which one was refused
                for name, values in chunk:
                    outcome[name] = await _answer(self._insert_alone(values))
                continue
            keys = {int(version): key for key, version in returned}
            for name, values in chunk:
                key = (
                    keys[values[VERSION]]
                    if self.resource.auto_key
                    else self.resource.key_of(values)
                )
                outcome[name] = (key, values[VERSION])
        return outcome

    def _insert_rows(self, count: int) -> Statement:
        """``INSERT … VALUES`` of ``count`` rows, ``RETURNING`` each row's key and version."""
        names = self._inserted_names
        return self._statement(f"insert_rows:{count}", lambda made: made.insert_rows(names, count))

    async def _insert_one(self, session: Session, values: Mapping[str, Any]) -> Key:
        inserted = self._insert_named(frozenset(values))  # fewer: left to the database
        if inserted.returns_rows:
            row = await session.fetch_one(inserted, values)
            assert row is not None
            key: Key = row[0] if self.resource.auto_key else self.resource.key_of(values)
            return key
        last_id = await session.execute(inserted, values)
        if self.resource.auto_key:
            return last_id
        given: Key = self.resource.key_of(values)
        return given

    def _insert_named(self, names: frozenset[str]) -> Statement:
        """``INSERT`` of a row that gives ``names`` (all of them, or fewer: the database
        fills the rest), returning an automatic key where the database can."""
        ordered = sorted(names)
        return self._statement(
            f"insert:{','.join(ordered)}", lambda made: made.insert_named(ordered)
        )

    async def _insert(self, conn: AsyncConnection, values: list[dict[str, Any]]) -> list[Key]:
        alike = len({frozenset(row) for row in values}) == 1  # else some left fields out
        inserting = self._made().insert_many()
        if not self.resource.auto_key:
            if alike:
                await conn.execute(inserting, values)
            else:
                for row in values:
                    await conn.execute(inserting, row)
            return [self.resource.key_of(row) for row in values]
        if alike and conn.dialect.insert_executemany_returning_sort_by_parameter_order:
            stmt = self._made().insert_many(returning_keys=True)
            return list((await conn.execute(stmt, values)).scalars())
        keys: list[Key] = []  # e.g. MySQL proper: no RETURNING, one statement per row
        for row in values:
            result = await conn.execute(inserting, row)
            keys.append(result.inserted_primary_key[0])  # type: ignore[index]
        return keys

    # A write of one row reads it, then changes it only if it is still at the version read
    # (compare-and-set: two autocommitted statements, where a locking transaction takes
    # four round trips: profiled at a third of a PUT). A write that keeps losing the race
    # to others on the same row takes the row's lock instead, so it cannot starve.

    async def _write_row(
        self,
        key: Key,
        expected: frozenset[int] | None,
        optimistic: Callable[[Record | None], Awaitable[T | _Again]],
        locked: Callable[[Session, Record | None], Awaitable[T]],
    ) -> T:
        """``optimistic`` with the row as it is now, until it does not answer ``AGAIN``
        (the row moved under it); after ``_OPTIMISTIC_TRIES``, ``locked`` with the row read
        under its lock, in one transaction."""
        for _ in range(_OPTIMISTIC_TRIES):
            done = await optimistic(await self._current(key, expected))
            if not isinstance(done, _Again):
                return done
        async with self._driver.transaction() as session:
            return await locked(session, await self._lock(session, key, expected))

    async def update(
        self, key: Key, changes: Mapping[str, Any], *, expected: frozenset[int] | None = None
    ) -> tuple[Record, Record] | None:
        async def optimistic(before: Record | None) -> tuple[Record, Record] | _Again | None:
            if before is None:
                return None
            if await self._set_if_at(key, changes, before.version):
                return before, before.replaced(dict(changes))
            return AGAIN

        async def locked(session: Session, before: Record | None) -> tuple[Record, Record] | None:
            if before is None:
                return None
            await self._set(session, key, changes)
            return before, before.replaced(dict(changes))

        done = await self._write_row(key, expected, optimistic, locked)
        if done is None:
            return None
        [after] = await self._as_kept([done[1]])
        return done[0], after

    async def put(
        self, key: Key, values: Mapping[str, Any], *, expected: frozenset[int] | None = None
    ) -> tuple[Record | None, Record]:
        changes = {name: value for name, value in values.items() if name not in self._keys}

        async def optimistic(before: Record | None) -> tuple[Record | None, Record] | _Again:
            if before is not None:
                if await self._set_if_at(key, changes, before.version):
                    return before, before.replaced(changes)
                return AGAIN
            try:
                async with self._driver.autocommitted() as session:
                    return None, await self._create_under(session, key, changes)
            except DuplicateKey:
                return AGAIN  # created meanwhile by another writer: there to replace now

        async def locked(session: Session, before: Record | None) -> tuple[Record | None, Record]:
            if before is not None:
                await self._set(session, key, changes)
                return before, before.replaced(changes)
            return None, await self._create_under(session, key, changes)

        earlier, after = await self._write_row(key, expected, optimistic, locked)
        left = earlier is None and len(changes) < len(self.resource.changeable)
        [kept] = await self._as_kept([after], read=left)
        return earlier, kept

    async def _create_under(self, session: Session, key: Key, changes: Mapping[str, Any]) -> Record:
        row = {**changes, **self.resource.key_values(key)}
        version = birth_version()
        await self._insert_one(session, self._stored(row) | {VERSION: version})
        return Record(key, {name: row.get(name) for name in self._names}, version)

    async def delete(self, key: Key, *, expected: frozenset[int] | None = None) -> Record | None:
        async def optimistic(before: Record | None) -> Record | _Again | None:
            if before is None:
                return None
            async with self._driver.autocommitted() as session:
                values = self._key_bound(KEY, key) | {AT: before.version}
                if await session.changed(self._deleted(at=True), values) == 1:
                    return before
            return AGAIN

        async def locked(session: Session, before: Record | None) -> Record | None:
            bound = self._key_bound(KEY, key)
            if before is not None and await session.changed(self._deleted(at=False), bound) > 1:
                raise KeyNotUnique(self.resource.table, key)  # the transaction is undone
            return before

        return await self._write_row(key, expected, optimistic, locked)

    async def _current(self, key: Key, expected: frozenset[int] | None) -> Record | None:
        """The row as it is now (read with the other writes' rows of this loop turn);
        VersionMismatch if ``expected`` names other versions."""
        return self._checked(await self._current_rows.load(str(key), key), expected)

    async def _read_together(self, wanted: Mapping[str, Key]) -> dict[str, Record | None]:
        found = await self.get_many(list(wanted.values()))  # keys compare exactly (binary)
        return {name: found.get(key) for name, key in wanted.items()}

    async def _lock(
        self, session: Session, key: Key, expected: frozenset[int] | None
    ) -> Record | None:
        """Read the row and hold its lock until the transaction ends (SQLite: the db lock)."""
        rows = await session.fetch_all(self._locked(), self._key_bound(KEY, key))
        return self._checked(self._one(key, rows), expected)

    def _checked(self, before: Record | None, expected: frozenset[int] | None) -> Record | None:
        """The row read; with ``expected``, VersionMismatch unless it is at one of those
        versions (an absent row is at none)."""
        if expected is not None and (before is None or before.version not in expected):
            raise VersionMismatch(before.version if before is not None else 0)
        return before

    def _deleted(self, *, at: bool) -> Statement:
        return self._statement(f"delete:{int(at)}", lambda made: made.deleted(at=at))

    def _setter(self, names: frozenset[str], conditional: bool) -> Statement:
        """``UPDATE … SET`` these fields and the next version, by key (and, conditional,
        only at the version ``at``): one statement per set of fields (PUT: all of them;
        PATCH: a few)."""
        ordered = sorted(names)
        return self._statement(
            f"update:{','.join(ordered)}:{int(conditional)}",
            lambda made: made.setter(ordered, conditional=conditional),
        )

    async def _set(self, session: Session, key: Key, changes: Mapping[str, Any]) -> None:
        statement = self._setter(frozenset(changes), conditional=False)
        if await session.changed(statement, self._stored(changes) | self._key_bound(KEY, key)) > 1:
            raise KeyNotUnique(self.resource.table, key)  # the transaction is undone

    async def _set_if_at(self, key: Key, changes: Mapping[str, Any], version: int) -> bool:
        """Set ``changes`` if the row is still at ``version``; whether it was. With the
        other writes of this loop turn (``_set_together``), but on SQLite (one writer at a
        time: nothing to share)."""
        if self._db.backend == "sqlite":
            return await self._set_alone(key, changes, version)
        return await self._sets.load(str(next(self._tickets)), (key, dict(changes), version))

    async def _set_together(self, wanted: Mapping[str, _Set]) -> dict[str, bool | Exception]:
        """The compare-and-sets of one loop turn, one statement per set of fields (and per
        ``_ROWS_PER_STATEMENT``), each row at most once a statement: two writes of one row in one
        statement would both find it returned. A statement the database refuses is undone
        and its writes made alone, so that each gets its own answer."""
        outcome: dict[str, bool | Exception] = {}
        by_fields: dict[frozenset[str], list[tuple[str, _Set]]] = {}
        for name, write in wanted.items():
            by_fields.setdefault(frozenset(write[1]), []).append((name, write))
        for fields, writes in by_fields.items():
            while writes:
                keys: set[Key] = set()
                now: list[tuple[str, _Set]] = []
                later: list[tuple[str, _Set]] = []
                for name, write in writes:
                    (later if write[0] in keys else now).append((name, write))
                    keys.add(write[0])
                for start in range(0, len(now), _ROWS_PER_STATEMENT):
                    chunk = now[start : start + _ROWS_PER_STATEMENT]
                    outcome |= await self._set_chunk(fields, chunk)
                writes = later
        return outcome

    async def _set_chunk(
        self, fields: frozenset[str], chunk: list[tuple[str, _Set]]
    ) -> dict[str, bool | Exception]:
        if len(chunk) == 1:
            name, write = chunk[0]
            return {name: await _answer(self._set_alone(*write))}
        writes = [write for _, write in chunk]
        try:
            if self._db.backend == "postgresql":
                changed = await self._set_returning(fields, writes)
            else:
                changed = await self._set_locked(fields, writes)
        except StoreUnavailable as error:
            if not _lost_a_lock(error):
                raise
            changed = None  # two transactions' locks crossed: each write alone then
        except KeyNotUnique:
            raise
        except Exception:
            changed = None  # each write alone then gets its own answer
        if changed is None:
            return {name: await _answer(self._set_alone(*write)) for name, write in chunk}
        return {name: key in changed for name, (key, _, _) in chunk}

    async def _set_returning(self, fields: frozenset[str], writes: list[_Set]) -> set[Key]:
        """PostgreSQL: one ``UPDATE … FROM (VALUES …) RETURNING``; the keys it changed."""
        bound: dict[str, Any] = {}
        for index, (key, changes, version) in enumerate(writes):
            bound |= {f"r{index}_{n}": v for n, v in self._stored(changes).items()}
            bound |= self._key_bound(f"r{index}__twotier_key", key)
            bound[f"r{index}__twotier_at"] = version
        async with self._driver.autocommitted() as session:
            rows = await session.fetch_all(self._set_many(fields, len(writes)), bound)
        return {self._row_key(row) for row in rows}

    async def _set_locked(self, fields: frozenset[str], writes: list[_Set]) -> set[Key]:
        """MySQL and MariaDB, which have no ``UPDATE … RETURNING``: in one transaction, the
        rows locked (in key order: two such transactions cannot deadlock) and their
        versions read, then one ``UPDATE … SET field = CASE key … END`` of those still at
        the version their write read; the keys it changed. Four round trips and one commit
        for the lot, where each write alone is a commit of its own."""
        keys: dict[str, Any] = {}
        for index, (key, _, _) in enumerate(writes):
            keys |= self._key_bound(f"k{index}", key)
        async with self._driver.transaction() as session:
            rows = await session.fetch_all(self._locked_keys(len(writes)), keys)
            now = {record.key: record.version for record in map(self._raw_record, rows)}
            still = [write for write in writes if now.get(write[0]) == write[2]]
            if still:
                bound: dict[str, Any] = {}
                for index, (key, changes, _) in enumerate(still):
                    bound |= {f"r{index}_{n}": v for n, v in self._stored(changes).items()}
                    bound |= self._key_bound(f"r{index}__twotier_key", key)
                changed = await session.changed(self._set_cases(fields, len(still)), bound)
                if changed > len(still):  # the transaction is undone
                    raise KeyNotUnique(self.resource.table, still[0][0])
        return {key for key, _, _ in still}

    def _locked_keys(self, count: int) -> Statement:
        return self._statement(f"locked_keys:{count}", lambda made: made.locked_keys(count))

    def _set_cases(self, fields: frozenset[str], count: int) -> Statement:
        ordered = sorted(fields)
        return self._statement(
            f"set_cases:{','.join(ordered)}:{count}", lambda made: made.set_cases(ordered, count)
        )

    def _set_many(self, fields: frozenset[str], count: int) -> Statement:
        ordered = sorted(fields)
        return self._statement(
            f"set_many:{','.join(ordered)}:{count}", lambda made: made.set_many(ordered, count)
        )

    async def _set_alone(self, key: Key, changes: Mapping[str, Any], version: int) -> bool:
        statement = self._setter(frozenset(changes), conditional=True)
        values = self._stored(changes) | self._key_bound(KEY, key) | {AT: version}
        async with self._driver.autocommitted() as session:
            changed: int = await session.changed(statement, values)
        return changed == 1

    async def bulk_load(self, rows: LoadRows, *, replace: bool, keep: Callable[[], bool]) -> int:
        """Load many rows through the database's bulk path, in one transaction. A table other
        tables' foreign keys point at is never emptied (``replace``: StoreRefused), and its
        existing rows are updated where they are."""
        try:
            referencing = await self._db.referencing(self.resource.table)
            if replace and referencing:
                raise StoreRefused(
                    f"table {self.resource.table} is referenced by the foreign keys of "
                    f"{', '.join(referencing)}: emptying it would delete their rows or leave "
                    "them orphaned; load it without --replace"
                )
            from twotier.store import sql_bulk  # the bulk paths' drivers, where they load

            with DatabaseTimer():
                return await sql_bulk.bulk_load(
                    self._db.url,
                    self.resource,
                    rows,
                    replace=replace,
                    version=birth_version(),
                    keep=keep,
                    tls=self._db.tls,
                    referenced=bool(referencing),
                    settings=self._db.server_settings,
                )
        except unavailable() as error:
            raise StoreUnavailable(describe(error)) from error
