"""One resource's rows in a SQL database: reads, writes and bulk loads, built from its table.

A write of one row reads it, then changes it only if it is still at the version read (a
compare-and-set on the version column); after three lost races it locks the row instead
(``SELECT … FOR UPDATE``; on SQLite ``BEGIN IMMEDIATE``). Either way each returns the row as
it was before and after, concurrent writes of one row each land once (no lost version
bumps), and a conditional write (``expected``) is checked against the version it changes.
A write of many rows is one transaction.

What runs per request (a row by key, a lookup, the writes of one row) goes through
``sql_driver``'s compiled statements on the driver's own pool; the rest (writes of many rows,
pages, bulk loads) through the SQLAlchemy engine.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from uuid import UUID

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    column,
    delete,
    exc,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy import values as values_of
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect, Row

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
from twotier.store import sql_bulk
from twotier.store.base import LoadRows, Query
from twotier.store.sql_compile import compiled, row_conversions
from twotier.store.sql_driver import Database, Driver, Session
from twotier.store.sql_errors import UNAVAILABLE, describe, refusal
from twotier.store.sql_schema import VERSION
from twotier.store.sql_statement import Statement, converted
from twotier.telemetry import DatabaseTimer
from twotier.versions import birth_version

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection


class RowsDatabase(Database, Protocol):
    """What a resource's rows need of the store that made them (``SQLStore``) besides what
    the driver does: the driver, the dialect, the foreign keys that point at a table, the
    tables whose rows the database rewrites as they are written."""

    driver: Driver

    @property
    def dialect(self) -> Dialect: ...

    async def referencing(self, table: str) -> list[str]: ...

    async def rewriting_tables(self) -> set[str]: ...


#: Compare-and-set attempts of a write before it takes the row's lock instead.
_OPTIMISTIC_TRIES = 3
#: The names the key and the expected version are bound under in a write: a field's name
#: starts with a letter, so none is ever one of these (a field named ``at`` would else
#: have taken the version's value).
_KEY = "_key"
_AT = "_at"
_LIMIT = "_limit"

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
    batch_limit: int | None = None

    def __init__(self, resource: Resource, table: Table, db: RowsDatabase) -> None:
        self.resource = resource
        self.table = table
        self._db = db
        self._keys = resource.key_fields
        self._key_columns = tuple(table.c[name] for name in self._keys)
        self._selected = (*(table.c[name] for name in resource.columns), table.c[VERSION])
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
        dialect = db.dialect
        self._processors = row_conversions(self._selected, dialect)
        by_key = self._key_is(_KEY)
        self._by_key = compiled(select(*self._selected).where(*by_key), dialect)
        self._locked = compiled(select(*self._selected).where(*by_key).with_for_update(), dialect)
        self._deleted = compiled(delete(table).where(*by_key), dialect)
        self._deleted_at = compiled(
            delete(table).where(*by_key, table.c[VERSION] == bindparam(_AT)), dialect
        )
        inserted = [name for name in self._names if name != resource.key or not resource.auto_key]
        self._inserted_names = (*inserted, VERSION)
        self._inserts_named: dict[frozenset[str], Statement] = {}
        self._inserted = self._insert_named(frozenset(self._inserted_names))
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
        self._sets_of: dict[tuple[frozenset[str], int], Statement] = {}
        self._cases_of: dict[tuple[frozenset[str], int], Statement] = {}
        self._locked_of: dict[int, Statement] = {}
        self._inserts_of: dict[int, Statement] = {}
        self._updates: dict[tuple[frozenset[str], bool], Statement] = {}
        self._by_keys: dict[int, Statement] = {}
        self._lookups: dict[tuple[str, int, bool], Statement] = {}
        self._rewriting: bool | None = None  # learned at start, else on the first write
        self._asking: asyncio.Future[bool] | None = None

    @property
    def _dialect(self) -> Dialect:
        """The store's dialect as it is now: what the database supports (MariaDB's
        RETURNING) is known once the engine has connected."""
        return self._db.dialect

    # -- rows as the tiers see them -----------------------------------------------------

    def _record(self, row: Row[Any] | tuple[Any, ...]) -> Record:
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
        return self._record(converted(row, self._processors))

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

    def _equal(self, name: str, value: object) -> list[ColumnElement[bool]]:
        """``name`` equals ``value`` exactly, as on every store: MySQL's text collations
        would also match other cases, accents and trailing spaces, and the cache would then
        hold two entries for what the database treats as one value. The collation's test
        stays too, so that an index on the column still narrows the search."""
        column = self.table.c[name]
        exact: list[ColumnElement[bool]] = [column == value]
        if self._db.backend == "mysql" and isinstance(column.type, String):
            bound = value if isinstance(value, BindParameter) else literal(value)
            exact.append(cast(column, mysql.BINARY) == cast(bound, mysql.BINARY))
        return exact

    def _key_is(self, name: str) -> list[ColumnElement[bool]]:
        """The key equals the value bound as ``name`` (see ``_equal``); a composite key's
        parts each equal theirs, bound as ``name_0``, ``name_1`` … (``_key_bound``)."""
        if len(self._keys) == 1:
            return self._equal(self._keys[0], bindparam(name))
        return [
            exact
            for index, part in enumerate(self._keys)
            for exact in self._equal(part, bindparam(f"{name}_{index}"))
        ]

    def _key_bound(self, name: str, key: Key) -> dict[str, Any]:
        """``key``'s values, bound as ``_key_is(name)`` takes them."""
        if len(self._keys) == 1:
            return {name: key}
        values = self.resource.key_values(key)
        return {f"{name}_{index}": values[part] for index, part in enumerate(self._keys)}

    def _keys_among(self, names: Sequence[str]) -> list[ColumnElement[bool]]:
        """The key is one of those bound as ``names`` (each as ``_key_is`` binds it)."""
        if len(self._keys) == 1:
            return self._among(self._keys[0], [bindparam(name) for name in names])
        return [or_(*(and_(*self._key_is(name)) for name in names))]

    def _key_after(self, key: Key) -> ColumnElement[bool]:
        """The rows after ``key`` in key order (a composite key's: its fields in turn)."""
        if len(self._keys) == 1:
            return self._key_columns[0] > key
        values = self.resource.key_values(key)
        return tuple_(*self._key_columns) > tuple_(*(values[part] for part in self._keys))

    def _row_key(self, row: Sequence[Any]) -> Key:
        """The key of a row that starts with the key's columns."""
        # asyncpg hands a UUID over as an object; twotier keys it by its text.
        values = [str(v) if isinstance(v, UUID) else v for v in row[: len(self._keys)]]
        if len(self._keys) == 1:
            key: Key = values[0]
            return key
        return self.resource.key_of(dict(zip(self._keys, values, strict=True)))

    def _among(self, name: str, values: Sequence[Any]) -> list[ColumnElement[bool]]:
        """``name`` is exactly one of ``values`` (see ``_equal``)."""
        column = self.table.c[name]
        among: list[ColumnElement[bool]] = [column.in_(values)]
        if self._db.backend == "mysql" and isinstance(column.type, String):
            bound = [v if isinstance(v, BindParameter) else literal(v) for v in values]
            among.append(cast(column, mysql.BINARY).in_([cast(v, mysql.BINARY) for v in bound]))
        return among

    # -- reads --------------------------------------------------------------------------

    async def get(self, key: Key) -> Record | None:
        return self._one(
            key, await self._driver.fetch_all(self._by_key, self._key_bound(_KEY, key))
        )

    def _one(self, key: Key, rows: Sequence[tuple[Any, ...]]) -> Record | None:
        """The row read by ``key``; KeyNotUnique if there were several (``init_schema``
        refuses a key that is not unique, and each write checks here, before it changes
        anything, that the table has not lost that since)."""
        if len(rows) > 1:
            raise KeyNotUnique(self.table.name, key)
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
                    raise KeyNotUnique(self.table.name, record.key)
                found[record.key] = record
        return found

    def _among_keys(self, count: int) -> Statement:
        statement = self._by_keys.get(count)
        if statement is None:
            where = self._keys_among([f"k{index}" for index in range(count)])
            statement = self._by_keys[count] = compiled(
                select(*self._selected).where(*where), self._dialect
            )
        return statement

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
                bound[_LIMIT] = left
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
        """The rows whose ``field`` is one of ``count`` bound values, by value and key
        (the lookup's index), the first ``_LIMIT`` of them if ``limited``."""
        statement = self._lookups.get((field, count, limited))
        if statement is None:
            kind = self.table.c[field].type  # so that its values are bound as the column's
            params: list[Any] = [bindparam(f"v{index}", type_=kind) for index in range(count)]
            made = (
                select(*self._selected)
                .where(*self._among(field, params))
                .order_by(self.table.c[field], *self._key_columns)
            )
            if limited:
                made = made.limit(bindparam(_LIMIT, type_=Integer()))
            statement = compiled(made, self._dialect)
            self._lookups[(field, count, limited)] = statement
        return statement

    async def find(self, query: Query) -> list[Record]:
        stmt = select(*self._selected)
        if query.after is not None:
            stmt = stmt.where(self._key_after(query.after))
        for name, value in query.filters:
            stmt = stmt.where(*self._equal(name, value))
        stmt = stmt.order_by(*self._key_columns).limit(query.limit)
        async with self._db.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [self._record(row) for row in rows]

    async def count(self) -> int:
        async with self._db.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(self.table)) or 0)

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
        except exc.IntegrityError as error:
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
        name = self.table.name
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
        if self.resource.auto_key and not self._dialect.insert_returning:
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
                    returned = await session.fetch_all(self._insert_of(len(chunk)), bound)
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

    def _insert_of(self, count: int) -> Statement:
        """``INSERT … VALUES`` of ``count`` rows, ``RETURNING`` each row's key and version."""
        statement = self._inserts_of.get(count)
        if statement is None:
            rows: list[dict[str, Any]] = [
                {name: bindparam(f"r{index}_{name}") for name in self._inserted_names}
                for index in range(count)
            ]
            made = (
                insert(self.table)
                .values(rows)
                .returning(self._key_columns[0], self.table.c[VERSION])
            )
            statement = self._inserts_of[count] = compiled(made, self._dialect)
        return statement

    async def _insert_one(self, session: Session, values: Mapping[str, Any]) -> Key:
        inserted = self._inserted
        if len(values) < len(self._inserted_names):  # fields left to the database
            inserted = self._insert_named(frozenset(values))
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
        """``INSERT`` of a row that gives ``names`` (all of them: ``_inserted``; fewer: the
        database fills the rest), returning an automatic key where the database can."""
        statement = self._inserts_named.get(names)
        if statement is None:
            made = insert(self.table).values({name: bindparam(name) for name in sorted(names)})
            statement = self._inserts_named[names] = compiled(made, self._dialect)
        return statement

    async def _insert(self, conn: AsyncConnection, values: list[dict[str, Any]]) -> list[Key]:
        alike = len({frozenset(row) for row in values}) == 1  # else some left fields out
        if not self.resource.auto_key:
            if alike:
                await conn.execute(insert(self.table), values)
            else:
                for row in values:
                    await conn.execute(insert(self.table), row)
            return [self.resource.key_of(row) for row in values]
        if alike and conn.dialect.insert_executemany_returning_sort_by_parameter_order:
            stmt = insert(self.table).returning(self._key_columns[0], sort_by_parameter_order=True)
            return list((await conn.execute(stmt, values)).scalars())
        keys: list[Key] = []  # e.g. MySQL proper: no RETURNING, one statement per row
        for row in values:
            result = await conn.execute(insert(self.table), row)
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
                values = self._key_bound(_KEY, key) | {_AT: before.version}
                if await session.changed(self._deleted_at, values) == 1:
                    return before
            return AGAIN

        async def locked(session: Session, before: Record | None) -> Record | None:
            bound = self._key_bound(_KEY, key)
            if before is not None and await session.changed(self._deleted, bound) > 1:
                raise KeyNotUnique(self.table.name, key)  # the transaction is undone
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
        rows = await session.fetch_all(self._locked, self._key_bound(_KEY, key))
        return self._checked(self._one(key, rows), expected)

    def _checked(self, before: Record | None, expected: frozenset[int] | None) -> Record | None:
        """The row read; with ``expected``, VersionMismatch unless it is at one of those
        versions (an absent row is at none)."""
        if expected is not None and (before is None or before.version not in expected):
            raise VersionMismatch(before.version if before is not None else 0)
        return before

    def _setter(self, names: frozenset[str], conditional: bool) -> Statement:
        """``UPDATE … SET`` these fields and the next version, by key (and, conditional,
        only at the version ``at``): one statement per set of fields (PUT: all of them;
        PATCH: a few)."""
        statement = self._updates.get((names, conditional))
        if statement is None:
            where = self._key_is(_KEY)
            if conditional:
                where.append(self.table.c[VERSION] == bindparam(_AT))
            statement = self._updates[names, conditional] = compiled(
                update(self.table)
                .where(*where)
                .values(
                    {name: bindparam(name) for name in sorted(names)}
                    | {VERSION: self.table.c[VERSION] + 1}
                ),
                self._dialect,
            )
        return statement

    async def _set(self, session: Session, key: Key, changes: Mapping[str, Any]) -> None:
        statement = self._setter(frozenset(changes), conditional=False)
        if await session.changed(statement, self._stored(changes) | self._key_bound(_KEY, key)) > 1:
            raise KeyNotUnique(self.table.name, key)  # the transaction is undone

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
                    raise KeyNotUnique(self.table.name, still[0][0])
        return {key for key, _, _ in still}

    def _locked_keys(self, count: int) -> Statement:
        """``SELECT … WHERE key IN (…) ORDER BY key FOR UPDATE`` of ``count`` keys."""
        statement = self._locked_of.get(count)
        if statement is None:
            where = self._keys_among([f"k{index}" for index in range(count)])
            made = (
                select(*self._selected).where(*where).order_by(*self._key_columns).with_for_update()
            )
            statement = self._locked_of[count] = compiled(made, self._dialect)
        return statement

    def _set_cases(self, fields: frozenset[str], count: int) -> Statement:
        """``UPDATE … SET`` each of ``fields`` to ``CASE key WHEN … THEN … END`` and the
        next version, of ``count`` rows by key (locked, and checked at their version)."""
        statement = self._cases_of.get((fields, count))
        if statement is None:
            keys = [f"r{index}__twotier_key" for index in range(count)]

            def case_of(name: str) -> ColumnElement[Any]:
                kind = self.table.c[name].type
                return case(
                    *(
                        (and_(*self._key_is(key)), bindparam(f"r{index}_{name}", type_=kind))
                        for index, key in enumerate(keys)
                    )
                )

            made = (
                update(self.table)
                .where(*self._keys_among(keys))
                .values(
                    {name: case_of(name) for name in sorted(fields)}
                    | {VERSION: self.table.c[VERSION] + 1}
                )
            )
            statement = self._cases_of[fields, count] = compiled(made, self._dialect)
        return statement

    def _set_many(self, fields: frozenset[str], count: int) -> Statement:
        """``UPDATE … SET`` ``fields`` and the next version ``FROM (VALUES …)`` of
        ``count`` rows (key, version read, values), where each row is still at its
        version, ``RETURNING`` the keys changed."""
        statement = self._sets_of.get((fields, count))
        if statement is None:
            names = sorted(fields)
            keys = (
                ["_twotier_key"]
                if len(self._keys) == 1
                else [f"_twotier_key_{index}" for index in range(len(self._keys))]
            )  # as _key_bound names them
            columns = [
                *(
                    column(name, key.type)
                    for name, key in zip(keys, self._key_columns, strict=True)
                ),
                column("_twotier_at", self.table.c[VERSION].type),
                *(column(name, self.table.c[name].type) for name in names),
            ]
            rows = [
                tuple(bindparam(f"r{index}_{c.name}", type_=c.type) for c in columns)
                for index in range(count)
            ]
            given = values_of(*columns, name="given").data(rows)
            made = (
                update(self.table)
                .values(
                    {name: given.c[name] for name in names} | {VERSION: self.table.c[VERSION] + 1}
                )
                .where(
                    *(
                        key == given.c[name]
                        for name, key in zip(keys, self._key_columns, strict=True)
                    ),
                    self.table.c[VERSION] == given.c["_twotier_at"],
                )
                .returning(*self._key_columns)
            )
            statement = self._sets_of[fields, count] = compiled(made, self._dialect)
        return statement

    async def _set_alone(self, key: Key, changes: Mapping[str, Any], version: int) -> bool:
        statement = self._setter(frozenset(changes), conditional=True)
        values = self._stored(changes) | self._key_bound(_KEY, key) | {_AT: version}
        async with self._driver.autocommitted() as session:
            changed: int = await session.changed(statement, values)
        return changed == 1

    async def bulk_load(self, rows: LoadRows, *, replace: bool, keep: Callable[[], bool]) -> int:
        """Load many rows through the database's bulk path, in one transaction. A table other
        tables' foreign keys point at is never emptied (``replace``: StoreRefused), and its
        existing rows are updated where they are."""
        try:
            referencing = await self._db.referencing(self.table.name)
            if replace and referencing:
                raise StoreRefused(
                    f"table {self.table.name} is referenced by the foreign keys of "
                    f"{', '.join(referencing)}: emptying it would delete their rows or leave "
                    "them orphaned; load it without --replace"
                )
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
        except UNAVAILABLE as error:
            raise StoreUnavailable(describe(error)) from error
