"""The statements that run per request, straight on the database driver.

A point read through SQLAlchemy's async engine cost about four times the driver's own time
(profiled with py-spy, benchmarks/README.md): a greenlet hop per call, a ping per pool
checkout, and BEGIN … COMMIT around every read. So the single-row statements (a row by key;
the write transactions of one row) are compiled once from the same Core constructs (quoted
names, bound values) into ``Statement``s and run on a pool of the driver's own:

- MySQL / MariaDB / Aurora MySQL: asyncmy (measured 2.7 times aiomysql's point reads);
- PostgreSQL / Aurora PostgreSQL: asyncpg (its prepared-statement cache does the rest);
- SQLite (embedded): the engine's own connection (``EngineDriver``): the statement's SQL
  through ``exec_driver_sql``, so every store runs the same code above this module.

Reads run in autocommit (one round trip); writes in a transaction. A connection whose use
failed or was cancelled half-way is closed, never handed to the next request; one that sat
idle long enough to have been dropped is pinged first; a read that finds its connection dead
retries once on a fresh one (reads are idempotent; writes are not retried). Faults become
StoreUnavailable; a taken key, DuplicateKey. Each read, and each write transaction, is one
timed database call (``DatabaseTimer``), as on the engine.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from twotier.errors import (
    ConstraintViolated,
    DuplicateKey,
    StoreUnavailable,
    WriteUnsupported,
)
from twotier.store.sql_errors import describe, refusal, unavailable
from twotier.store.sql_statement import Row, Statement
from twotier.store.sql_url import DatabaseURL
from twotier.telemetry import DatabaseTimer

if TYPE_CHECKING:  # the engine's asyncio layer is imported where the engine is made
    from sqlalchemy.ext.asyncio import AsyncConnection


class Database(Protocol):
    """What the drivers and a resource's rows need of the store that made them
    (``SQLStore``): its URL, its TLS, and its engine's connections."""

    url: DatabaseURL
    backend: str
    #: PostgreSQL's run-time settings for every connection (the URL's ``options``).
    server_settings: dict[str, str]

    @property
    def tls(self) -> ssl.SSLContext | None: ...

    def connect(self, *, write: bool = False) -> AbstractAsyncContextManager[AsyncConnection]:
        """A pooled connection in a transaction; faults become StoreUnavailable."""
        ...


#: Seconds a pooled MySQL connection may sit idle before it is pinged on checkout.
_IDLE_CHECK = 30.0

# asyncmy logs every server warning (a CREATE DATABASE IF NOT EXISTS of one that exists)
# as a warning of its own: the statements that matter say what went wrong themselves.
logging.getLogger("asyncmy").setLevel(logging.ERROR)


async def _json_codecs(conn: Any) -> None:
    """JSON documents as SQLAlchemy's asyncpg dialect passes them (its statements bind the
    text the JSON type serialized) and as twotier reads them (parsed): asyncpg alone would
    hand back text."""
    await conn.set_type_codec(
        "json", encoder=str.encode, decoder=orjson.loads, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda text: b"\x01" + text.encode(),  # jsonb's binary form: a version byte
        decoder=lambda data: orjson.loads(data[1:]),
        schema="pg_catalog",
        format="binary",
    )


class Session(Protocol):
    """One connection inside a write transaction."""

    async def fetch_one(self, statement: Statement, values: Mapping[str, Any]) -> Row | None: ...

    async def fetch_all(self, statement: Statement, values: Mapping[str, Any]) -> list[Row]: ...

    async def execute(self, statement: Statement, values: Mapping[str, Any]) -> int:
        """Run it; the id of an inserted row where the database tells (MySQL, SQLite)."""

    async def changed(self, statement: Statement, values: Mapping[str, Any]) -> int:
        """Run it; the rows it changed."""


class Driver(Protocol):
    async def fetch_one(self, statement: Statement, values: Mapping[str, Any]) -> Row | None:
        """One row (or None), read outside any transaction."""

    async def fetch_all(self, statement: Statement, values: Mapping[str, Any]) -> list[Row]:
        """Every row, read outside any transaction."""

    def transaction(self) -> Any:
        """``async with driver.transaction() as session``: committed when the block ends,
        rolled back if it raises."""

    def autocommitted(self) -> Any:
        """``async with driver.autocommitted() as session``: each statement commits by
        itself (a write of one statement: no BEGIN and COMMIT round trips around it)."""

    def pool_usage(self) -> dict[str, int]: ...

    async def close(self) -> None: ...


def driver_for(store: Database, pool_size: int, timeout: float) -> Driver:
    if store.backend == "mysql":
        return AsyncmyDriver(store.url, store.tls, pool_size, timeout)
    if store.backend == "postgresql":
        return AsyncpgDriver(store.url, store.tls, pool_size, timeout, store.server_settings)
    return EngineDriver(store)


def _meaning(error: BaseException) -> BaseException | None:
    """What a driver error means to the tiers above (None: a bug, raised as it is)."""
    refused = refusal(error)
    if refused is not None:
        return refused
    if isinstance(error, unavailable()) or _is_connection_error(error):
        return StoreUnavailable(describe(error))
    return None


def _is_connection_error(error: BaseException) -> bool:
    """asyncmy's OperationalError/InterfaceError (its own classes), asyncpg's connection
    and interface errors: the database or the link is not there."""
    name = type(error).__name__
    if name in ("OperationalError", "InterfaceError", "InternalClientError"):
        return True
    module = type(error).__module__
    return module.startswith("asyncpg") and (
        "Connection" in name or "Interface" in name or "CannotConnectNow" in name
    )


class _Pooled:
    """A pool of the driver's own connections, created on first use; reads retried once on
    a fresh connection when the pooled one turned out dead."""

    def __init__(self, connect: dict[str, Any], size: int, timeout: float) -> None:
        self._connect = connect
        self._size = size
        self._timeout = timeout
        self._pool: Any = None
        self._creating: asyncio.Lock | None = None

    async def _create_pool(self) -> Any:
        raise NotImplementedError

    async def _pool_ready(self) -> Any:
        if self._pool is None:
            self._creating = self._creating or asyncio.Lock()
            async with self._creating:
                if self._pool is None:
                    self._pool = await self._create_pool()
        return self._pool

    async def _fetch_all(self, statement: Statement, values: Mapping[str, Any]) -> list[Row]:
        raise NotImplementedError

    async def fetch_one(self, statement: Statement, values: Mapping[str, Any]) -> Row | None:
        rows = await self.fetch_all(statement, values)
        return rows[0] if rows else None

    async def fetch_all(self, statement: Statement, values: Mapping[str, Any]) -> list[Row]:
        with DatabaseTimer():
            try:
                return await self._fetch_all(statement, values)
            except StoreUnavailable:  # a connection that died in the pool: once more
                return await self._fetch_all(statement, values)


# -- MySQL / MariaDB: asyncmy ---------------------------------------------------------------


class _MySQLSession:
    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch_one(self, statement: Statement, values: Mapping[str, Any]) -> Row | None:
        async with self._conn.cursor() as cursor:
            await cursor.execute(statement.sql, statement.args(values))
            row: Row | None = await cursor.fetchone()
            return row

    async def fetch_all(self, statement: Statement, values: Mapping[str, Any]) -> list[Row]:
        async with self._conn.cursor() as cursor:
            await cursor.execute(statement.sql, statement.args(values))
            return list(await cursor.fetchall())

    async def execute(self, statement: Statement, values: Mapping[str, Any]) -> int:
        async with self._conn.cursor() as cursor:
            await cursor.execute(statement.sql, statement.args(values))
            return int(cursor.lastrowid or 0)

    async def changed(self, statement: Statement, values: Mapping[str, Any]) -> int:
        async with self._conn.cursor() as cursor:
            await cursor.execute(statement.sql, statement.args(values))
            return int(cursor.rowcount)


class AsyncmyDriver(_Pooled):
    def __init__(
        self, url: DatabaseURL, tls: ssl.SSLContext | None, size: int, timeout: float
    ) -> None:
        connect = {
            "host": url.host or "127.0.0.1",
            "port": url.port or 3306,
            "user": url.username or "root",
            "password": url.password or "",
            "db": url.database,
            "charset": str(url.query.get("charset", "utf8mb4")),
            "connect_timeout": timeout,
            "autocommit": True,
            "ssl": tls,
        }
        super().__init__(connect, size, timeout)

    async def _create_pool(self) -> Any:
        import asyncmy

        return await asyncmy.create_pool(
            minsize=0, maxsize=self._size, pool_recycle=1800, **self._connect
        )

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection, checked first if it sat idle long enough for the server
        to have dropped it; closed instead of returned if its use did not end cleanly (a
        half-read answer, an open transaction: never handed to the next request)."""
        pool = await self._pool_ready()
        # A free connection is handed over at once; only a wait needs a deadline (a
        # timeout costs a timer handle per call: profiled at 4% of a miss).
        async with asyncio.timeout(None if pool.freesize else self._timeout):
            conn = await pool.acquire()
            if asyncio.get_running_loop().time() - conn.last_usage > _IDLE_CHECK:
                try:
                    await conn.ping(reconnect=True)
                except BaseException:
                    conn.close()
                    pool.release(conn)
                    raise
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        finally:
            pool.release(conn)

    async def _fetch_all(self, statement: Statement, values: Mapping[str, Any]) -> list[Row]:
        with _translating():
            async with self._connection() as conn:
                return await _MySQLSession(conn).fetch_all(statement, values)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        with DatabaseTimer(), _translating():
            async with self._connection() as conn:
                await conn.begin()
                yield _MySQLSession(conn)
                await conn.commit()

    @asynccontextmanager
    async def autocommitted(self) -> AsyncIterator[Session]:
        with DatabaseTimer(), _translating():
            async with self._connection() as conn:  # the pool's connections autocommit
                yield _MySQLSession(conn)

    def pool_usage(self) -> dict[str, int]:
        if self._pool is None:
            return {"in_use": 0, "idle": 0}
        free = int(self._pool.freesize)
        return {"in_use": int(self._pool.size) - free, "idle": free}

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            try:  # a shutdown never waits on the pool longer than a query would
                async with asyncio.timeout(self._timeout):
                    await pool.wait_closed()
            except TimeoutError:
                pool.terminate()


# -- PostgreSQL: asyncpg -----------------------------------------------------------------


class _PostgresSession:
    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch_one(self, statement: Statement, values: Mapping[str, Any]) -> Row | None:
        row = await self._conn.fetchrow(statement.sql, *statement.args(values))
        return tuple(row) if row is not None else None

    async def fetch_all(self, statement: Statement, values: Mapping[str, Any]) -> list[Row]:
        rows = await self._conn.fetch(statement.sql, *statement.args(values))
        return [tuple(row) for row in rows]

    async def execute(self, statement: Statement, values: Mapping[str, Any]) -> int:
        await self._conn.execute(statement.sql, *statement.args(values))
        return 0

    async def changed(self, statement: Statement, values: Mapping[str, Any]) -> int:
        status: str = await self._conn.execute(statement.sql, *statement.args(values))
        return int(status.rsplit(" ", 1)[-1])  # "UPDATE 1", "DELETE 0"


class AsyncpgDriver(_Pooled):
    def __init__(
        self,
        url: DatabaseURL,
        tls: ssl.SSLContext | None,
        size: int,
        timeout: float,
        settings: Mapping[str, str],
    ) -> None:
        connect = {
            "host": url.host or "127.0.0.1",
            "port": url.port or 5432,
            "user": url.username,
            "password": url.password,
            "database": url.database,
            "ssl": tls,
            "timeout": timeout,
            "server_settings": dict(settings) or None,
        }
        super().__init__(connect, size, timeout)

    async def _create_pool(self) -> Any:
        import asyncpg

        return await asyncpg.create_pool(
            min_size=0,
            max_size=self._size,
            max_inactive_connection_lifetime=1800,
            init=_json_codecs,
            **self._connect,
        )

    async def _fetch_all(self, statement: Statement, values: Mapping[str, Any]) -> list[Row]:
        with _translating():
            pool = await self._pool_ready()
            async with pool.acquire(timeout=self._timeout) as conn:
                return await _PostgresSession(conn).fetch_all(statement, values)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        # asyncpg's pool closes a connection released mid-query or mid-transaction, and
        # its transaction block rolls back on an error.
        with DatabaseTimer(), _translating():
            pool = await self._pool_ready()
            async with pool.acquire(timeout=self._timeout) as conn, conn.transaction():
                yield _PostgresSession(conn)

    @asynccontextmanager
    async def autocommitted(self) -> AsyncIterator[Session]:
        with DatabaseTimer(), _translating():
            pool = await self._pool_ready()
            async with pool.acquire(timeout=self._timeout) as conn:
                yield _PostgresSession(conn)

    def pool_usage(self) -> dict[str, int]:
        if self._pool is None:
            return {"in_use": 0, "idle": 0}
        idle = int(self._pool.get_idle_size())
        return {"in_use": int(self._pool.get_size()) - idle, "idle": idle}

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:  # a shutdown never waits on the pool longer than a query would
                async with asyncio.timeout(self._timeout):
                    await pool.close()
            except TimeoutError:
                pool.terminate()


# -- SQLite: the engine's connection -----------------------------------------------------


class _EngineSession:
    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch_one(self, statement: Statement, values: Mapping[str, Any]) -> Row | None:
        rows = await self.fetch_all(statement, values)
        return rows[0] if rows else None

    async def fetch_all(self, statement: Statement, values: Mapping[str, Any]) -> list[Row]:
        result = await self._conn.exec_driver_sql(statement.sql, statement.args(values))
        return [tuple(row) for row in result]

    async def execute(self, statement: Statement, values: Mapping[str, Any]) -> int:
        result = await self._conn.exec_driver_sql(statement.sql, statement.args(values))
        return int(result.lastrowid or 0)

    async def changed(self, statement: Statement, values: Mapping[str, Any]) -> int:
        result = await self._conn.exec_driver_sql(statement.sql, statement.args(values))
        return int(result.rowcount)


class EngineDriver:
    """SQLite: aiosqlite has no pool to skip, and its cost is its thread hop, not the
    engine's; the engine's connections (WAL, BEGIN IMMEDIATE for writes) serve as they are."""

    def __init__(self, store: Database) -> None:
        self._store = store

    async def fetch_one(self, statement: Statement, values: Mapping[str, Any]) -> Row | None:
        rows = await self.fetch_all(statement, values)
        return rows[0] if rows else None

    async def fetch_all(self, statement: Statement, values: Mapping[str, Any]) -> list[Row]:
        async with self._store.connect() as conn:  # timed by the engine's connect()
            result = await conn.exec_driver_sql(statement.sql, statement.args(values))
            return [tuple(row) for row in result]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        try:
            async with self._store.connect(write=True) as conn:
                yield _EngineSession(conn)
        except Exception as error:
            refused = refusal(error)
            if refused is not None:
                raise refused from None
            raise

    def autocommitted(self) -> Any:
        return self.transaction()  # SQLite's writes queue on BEGIN IMMEDIATE either way

    def pool_usage(self) -> dict[str, int]:
        return {}

    async def close(self) -> None:
        return None


@contextmanager
def _translating() -> Iterator[None]:
    """Driver errors as the tiers above know them: DuplicateKey, StoreUnavailable; any
    other error (a bug, the caller's own, a cancellation) passes as it is."""
    try:
        yield
    except (DuplicateKey, ConstraintViolated, WriteUnsupported, StoreUnavailable):
        raise
    except Exception as error:
        meaning = _meaning(error)
        if meaning is None:
            raise
        raise meaning from error
