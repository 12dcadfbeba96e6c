"""The SQL store: SQLite (embedded), MySQL/MariaDB/Aurora MySQL and PostgreSQL.

One async SQLAlchemy engine (and so one connection pool) per process. Statements are
SQLAlchemy Core constructs, so every value travels as a bound parameter.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    URL,
    ColumnElement,
    Row,
    String,
    cast,
    delete,
    event,
    exc,
    func,
    insert,
    literal,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

from twotier.access.keys import KeyRecord, Role
from twotier.heroes import HeroIn, HeroRecord
from twotier.store import sql_bulk
from twotier.store.base import HeroQuery, StoreUnavailable
from twotier.store.sql_bulk import Rows
from twotier.store.sql_schema import (
    RECORD_COLUMNS,
    access_metadata,
    api_keys,
    metadata,
    superheroes,
)
from twotier.store.sql_tls import split_tls
from twotier.telemetry import DatabaseTimer
from twotier.versions import birth_version

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "mysql": "mysql+aiomysql",
    "mariadb": "mysql+aiomysql",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}

# The lock that serializes schema creation between processes (named for MySQL's GET_LOCK,
# numbered for PostgreSQL's advisory locks).
_LOCK = {"name": "twotier_schema", "key": 7_377_001, "seconds": 60}

# Values per IN (...) list: well under every dialect's bound-parameter limit.
_IN_CHUNK = 1000

# Errors that mean "the database is not there right now", as opposed to a bug.
_UNAVAILABLE = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.TimeoutError,
    exc.DisconnectionError,
    TimeoutError,
    ConnectionError,
    OSError,
)


def async_url(url: str) -> URL:
    """``mysql://…`` → ``mysql+aiomysql://…`` and so on; explicit drivers are kept."""
    parsed = make_url(url)
    if "+" not in parsed.drivername:
        if parsed.drivername not in _ASYNC_DRIVERS:
            raise ValueError(
                f"unsupported database URL scheme {parsed.drivername!r}: "
                "use sqlite://, mysql:// or postgresql://"
            )
        parsed = parsed.set(drivername=_ASYNC_DRIVERS[parsed.drivername])
    if parsed.get_backend_name() == "mysql" and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def _utc(moment: datetime) -> datetime:
    # MySQL and SQLite hand back naive datetimes (of the UTC values stored).
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _record(row: Row[Any, Any, Any, Any, Any, Any, Any]) -> HeroRecord:
    return HeroRecord(*row)  # RECORD_COLUMNS is in HeroRecord field order


class SQLStore:
    """The superhero table in a SQL database, through one pooled async engine."""

    def __init__(self, url: str, *, pool_size: int = 10, timeout: float = 5.0) -> None:
        self.url, self._tls = split_tls(async_url(url))
        self.backend = self.url.get_backend_name()
        self._timeout = timeout
        self.engine = self._create_engine(self.url, pool_size, timeout)

    def _create_engine(self, url: URL, pool_size: int, timeout: float) -> AsyncEngine:
        connect_args: dict[str, Any] = {}
        if self.backend == "sqlite":
            connect_args["timeout"] = timeout
        elif self.backend == "mysql":
            connect_args["connect_timeout"] = timeout
        elif self.backend == "postgresql":
            connect_args["timeout"] = timeout
        if self._tls is not None:
            connect_args["ssl"] = self._tls
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=timeout,
            pool_pre_ping=self.backend != "sqlite",
            pool_recycle=1800,
            connect_args=connect_args,
        )
        if self.backend == "sqlite":
            _configure_sqlite(engine)
        return engine

    @asynccontextmanager
    async def _connect(self, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
        """A pooled connection in a transaction; database faults become StoreUnavailable."""
        try:
            with DatabaseTimer():
                async with self.engine.connect() as conn:
                    if write:
                        await conn.execution_options(twotier_write=True)
                    async with conn.begin():
                        yield conn
        except _UNAVAILABLE as error:
            raise StoreUnavailable(_describe(error)) from error

    def pool_usage(self) -> dict[str, int]:
        pool = self.engine.pool
        checked_out = getattr(pool, "checkedout", None)
        checked_in = getattr(pool, "checkedin", None)
        if checked_out is None or checked_in is None:  # a pool that keeps nothing
            return {}
        return {"in_use": checked_out(), "idle": checked_in()}

    # -- schema -------------------------------------------------------------------------

    async def init_schema(self) -> None:
        await self._ensure_database()
        try:
            async with self._connect(write=True) as conn:  # SQLite: BEGIN IMMEDIATE
                # Several processes (workers, tasks) may start at once: one creates the
                # schema while the others wait, then find it there.
                if self.backend == "postgresql":
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), _LOCK)
                elif self.backend == "mysql":
                    await conn.execute(text("SELECT GET_LOCK(:name, :seconds)"), _LOCK)
                try:
                    await conn.run_sync(metadata.create_all, checkfirst=True)
                    await conn.run_sync(access_metadata.create_all, checkfirst=True)
                finally:
                    if self.backend == "mysql":  # DDL commits at once there: release by hand
                        await conn.execute(text("SELECT RELEASE_LOCK(:name)"), _LOCK)
        except StoreUnavailable:
            raise
        except _UNAVAILABLE as error:
            raise StoreUnavailable(_describe(error)) from error

    async def _ensure_database(self) -> None:
        """Create the database named in the URL if the server does not have it yet."""
        name = self.url.database
        if self.backend == "sqlite":
            if name and name != ":memory:":
                Path(name).parent.mkdir(parents=True, exist_ok=True)
            return
        if not name:
            raise ValueError("the database URL must name a database")
        server_db = "postgres" if self.backend == "postgresql" else None
        server_url = URL.create(
            self.url.drivername,
            self.url.username,
            self.url.password,
            self.url.host,
            self.url.port,
            server_db,
            self.url.query,
        )
        admin = create_async_engine(
            server_url,
            isolation_level="AUTOCOMMIT",
            poolclass=NullPool,
            connect_args={"ssl": self._tls} if self._tls is not None else {},
        )
        try:
            async with admin.connect() as conn:
                quoted = conn.dialect.identifier_preparer.quote(name)
                if self.backend == "mysql":
                    await conn.execute(
                        text(f"CREATE DATABASE IF NOT EXISTS {quoted} CHARACTER SET utf8mb4")
                    )
                    return
                exists = await conn.scalar(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                )
                if not exists:
                    try:
                        await conn.execute(text(f"CREATE DATABASE {quoted}"))
                    except exc.ProgrammingError as error:  # created meanwhile by another process
                        if "already exists" not in str(error):
                            raise
        except _UNAVAILABLE as error:
            raise StoreUnavailable(_describe(error)) from error
        finally:
            await admin.dispose()

    async def drop_schema(self) -> None:
        """Drop the table (tests and `--replace` use it); the database itself stays."""
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.drop_all, checkfirst=True)

    # -- API keys -----------------------------------------------------------------------

    async def add_key(self, record: KeyRecord) -> None:
        async with self._connect(write=True) as conn:
            await conn.execute(
                insert(api_keys),
                {
                    "id": record.id,
                    "name": record.name,
                    "role": record.role.value,
                    "secret_hash": record.secret_hash,
                    "created_at": self._stored_time(record.created_at),
                },
            )

    def _stored_time(self, moment: datetime) -> datetime:
        """PostgreSQL keeps time zones; MySQL and SQLite get naive UTC."""
        utc = moment.astimezone(UTC)
        return utc if self.backend == "postgresql" else utc.replace(tzinfo=None)

    async def list_keys(self) -> list[KeyRecord]:
        async with self._connect() as conn:
            rows = await conn.execute(select(api_keys).order_by(api_keys.c.created_at))
            return [
                KeyRecord(
                    id=row.id,
                    name=row.name,
                    role=Role(row.role),
                    secret_hash=row.secret_hash,
                    created_at=_utc(row.created_at),
                    revoked_at=_utc(row.revoked_at) if row.revoked_at else None,
                )
                for row in rows
            ]

    async def revoke_key(self, key_id: str, when: datetime) -> bool:
        stmt = (
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=self._stored_time(when))
        )
        async with self._connect(write=True) as conn:
            return bool((await conn.execute(stmt)).rowcount)

    # -- reads --------------------------------------------------------------------------

    async def get(self, hero_id: int) -> HeroRecord | None:
        stmt = select(*RECORD_COLUMNS).where(superheroes.c.id == hero_id)
        async with self._connect() as conn:
            row = (await conn.execute(stmt)).first()
        return _record(row) if row else None

    async def get_many(self, hero_ids: Sequence[int]) -> dict[int, HeroRecord]:
        found: dict[int, HeroRecord] = {}
        unique = sorted(set(hero_ids))
        async with self._connect() as conn:
            for start in range(0, len(unique), _IN_CHUNK):
                chunk = unique[start : start + _IN_CHUNK]
                stmt = select(*RECORD_COLUMNS).where(superheroes.c.id.in_(chunk))
                for row in await conn.execute(stmt):
                    found[row.id] = _record(row)
        return found

    async def by_xp(
        self, xps: Sequence[int], limit: int | None = None
    ) -> dict[int, list[HeroRecord]]:
        found: dict[int, list[HeroRecord]] = {xp: [] for xp in xps}
        unique = sorted(found)
        left = limit
        async with self._connect() as conn:
            for start in range(0, len(unique), _IN_CHUNK):
                chunk = unique[start : start + _IN_CHUNK]
                stmt = (
                    select(*RECORD_COLUMNS)
                    .where(superheroes.c.xp.in_(chunk))
                    .order_by(superheroes.c.xp, superheroes.c.id)
                )
                if left is not None:
                    stmt = stmt.limit(left)
                for row in await conn.execute(stmt):
                    found[row.xp].append(_record(row))
                    if left is not None:
                        left -= 1
                if left == 0:
                    break
        return found

    async def find(self, query: HeroQuery) -> list[HeroRecord]:
        stmt = select(*RECORD_COLUMNS).where(superheroes.c.id > query.after)
        for field, value in query.filters:
            stmt = stmt.where(*self._equal(superheroes.c[field], value))
        stmt = stmt.order_by(superheroes.c.id).limit(query.limit)
        async with self._connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_record(row) for row in rows]

    def _equal(self, column: ColumnElement[Any], value: object) -> list[ColumnElement[bool]]:
        """``column`` equals ``value`` exactly, as on every store: MySQL's text collations
        would also match other cases, accents and trailing spaces, and the cache would then
        hold two entries for what the database treats as one value. The collation's test
        stays too, so that an index on the column still narrows the search."""
        exact = [column == value]
        if self.backend == "mysql" and isinstance(column.type, String):
            exact.append(cast(column, mysql.BINARY) == cast(literal(value), mysql.BINARY))
        return exact

    async def count(self) -> int:
        async with self._connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(superheroes)) or 0)

    async def ping(self) -> None:
        async with self._connect() as conn:
            await conn.execute(text("SELECT 1"))

    # -- writes -------------------------------------------------------------------------

    async def create(self, hero: HeroIn) -> HeroRecord:
        return (await self.create_many([hero]))[0]

    async def create_many(self, heroes: Sequence[HeroIn]) -> list[HeroRecord]:
        """Insert all rows in one transaction (all or nothing) and return them with ids."""
        if not heroes:
            return []
        version = birth_version()
        values = [hero.model_dump() | {"version": version} for hero in heroes]
        async with self._connect(write=True) as conn:
            if conn.dialect.insert_executemany_returning_sort_by_parameter_order:
                stmt = insert(superheroes).returning(superheroes.c.id, sort_by_parameter_order=True)
                ids = list((await conn.execute(stmt, values)).scalars())
            else:  # e.g. MySQL proper: no RETURNING, one statement per row
                ids = []
                for row in values:
                    result = await conn.execute(insert(superheroes), row)
                    ids.append(result.inserted_primary_key[0])  # type: ignore[index]
        return [HeroRecord(id=i, **row) for i, row in zip(ids, values, strict=True)]

    async def bulk_load(self, rows: Rows, *, replace: bool, keep: Callable[[], bool]) -> int:
        """Load many rows through the database's bulk path, in one transaction."""
        try:
            with DatabaseTimer():
                return await sql_bulk.bulk_load(
                    self.url,
                    rows,
                    replace=replace,
                    version=birth_version(),
                    keep=keep,
                    tls=self._tls,
                )
        except _UNAVAILABLE as error:
            raise StoreUnavailable(_describe(error)) from error

    async def update(
        self, hero_id: int, changes: Mapping[str, Any]
    ) -> tuple[HeroRecord, HeroRecord] | None:
        async with self._connect(write=True) as conn:
            before = await self._lock(conn, hero_id)
            if before is None:
                return None
            await conn.execute(
                update(superheroes)
                .where(superheroes.c.id == hero_id)
                .values(**changes, version=superheroes.c.version + 1)
            )
        return before, before.replaced(dict(changes))

    async def delete(self, hero_id: int) -> HeroRecord | None:
        async with self._connect(write=True) as conn:
            before = await self._lock(conn, hero_id)
            if before is not None:
                await conn.execute(delete(superheroes).where(superheroes.c.id == hero_id))
        return before

    @staticmethod
    async def _lock(conn: AsyncConnection, hero_id: int) -> HeroRecord | None:
        """Read the row and hold its lock until the transaction ends (SQLite: the db lock)."""
        stmt = select(*RECORD_COLUMNS).where(superheroes.c.id == hero_id).with_for_update()
        row = (await conn.execute(stmt)).first()
        return _record(row) if row else None

    async def close(self) -> None:
        await self.engine.dispose()


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL for concurrent readers; BEGIN IMMEDIATE for writes so they queue, not deadlock."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see below).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("twotier_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _describe(error: BaseException) -> str:
    """A one-line reason without the SQL or parameters (they may hold user data)."""
    original = getattr(error, "orig", None) or error
    if isinstance(original, asyncio.TimeoutError | TimeoutError):
        return "database timed out"
    tls = _tls_failure(error)
    if tls is not None:  # drivers bury it under "can't connect": say what it was
        verify = getattr(tls, "verify_message", None)
        detail = f"certificate verify failed: {verify}" if verify else str(tls)
        return f"database unavailable: TLS handshake failed: {detail}"[:300]
    reason = str(original).splitlines()[0] if str(original) else type(original).__name__
    return f"database unavailable: {reason[:200]}"


def _tls_failure(error: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return None
