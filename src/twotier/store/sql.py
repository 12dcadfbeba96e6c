"""The SQL store: SQLite (embedded), MySQL/MariaDB/Aurora MySQL and PostgreSQL.

Per process, one pool of the driver's own connections for what runs per request (``sql_driver``:
a row by key, a lookup, the writes of one row, the API keys, the database's identity) and one
async SQLAlchemy engine for the rest (schema work, pages, writes of many rows, bulk loads),
made on first use. Statements are SQLAlchemy Core constructs, so every value travels as a
bound parameter and every name is quoted; ``init_schema`` keeps the ones a process runs
first, compiled, in the database (the book: ``twotier_statements``), so that a process that
serves from the drivers over a schema already made (a Lambda function's cold start) reads
them in one query and never imports SQLAlchemy at all; SQLAlchemy is imported where
anything else is asked for.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from twotier import __version__
from twotier.errors import SchemaMismatch, StoreRefused, StoreUnavailable
from twotier.key_records import KeyRecord, Role
from twotier.resources import Resource, load_resources
from twotier.resources.introspected import Introspected
from twotier.store.base import Detachment, FollowerUser, SchemaChange, new_id
from twotier.store.sql_driver import driver_for
from twotier.store.sql_errors import describe, unavailable
from twotier.store.sql_rows import SQLRows
from twotier.store.sql_statement import Conversion, Statement, by_name, converted, named
from twotier.store.sql_tls import ca_file, split_tls
from twotier.store.sql_url import DatabaseURL
from twotier.telemetry import DatabaseTimer

if TYPE_CHECKING:  # SQLAlchemy is imported where it is used (the module's docstring)
    from sqlalchemy import Connection, MetaData, Table
    from sqlalchemy.engine import Dialect
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
    from sqlalchemy.pool import ConnectionPoolEntry
    from sqlalchemy.sql import ClauseElement

    from twotier.store.sql_adopt import Plan

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "mysql": "mysql+asyncmy",
    "mariadb": "mysql+asyncmy",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}

# The lock that serializes schema creation between processes (named for MySQL's GET_LOCK,
# numbered for PostgreSQL's advisory locks).
_LOCK = {"name": "twotier_schema", "key": 7_377_001, "seconds": 60}

log = logging.getLogger("twotier.schema")
# The meta table's rows: the database's identity, and what ``init_schema`` last made.
_IDENTITY = "database_id"
_MADE = "schema_made"
#: The book's row of the store's own statements (a resource's name starts with a letter).
_STORE = "_store"
#: The two statements a process runs before it has the book (the database's facts, and the
#: book itself), as SQLAlchemy compiles ``sql_schema.fact_query`` and ``book_query`` for
#: the drivers' pools (a test holds them equal): reading the book needs none of it.
_FIRST: dict[tuple[str, str], tuple[str, str]] = {
    ("fact", "mysql"): (
        "SELECT twotier_meta.value \nFROM twotier_meta \nWHERE twotier_meta.name = %s",
        "name",
    ),
    ("fact", "postgresql"): (
        "SELECT twotier_meta.value \nFROM twotier_meta \nWHERE twotier_meta.name = $1::VARCHAR",
        "name",
    ),
    ("book", "mysql"): (
        "SELECT twotier_statements.name, twotier_statements.book \nFROM twotier_statements "
        "\nWHERE twotier_statements.digest = %s",
        "digest",
    ),
    ("book", "postgresql"): (
        "SELECT twotier_statements.name, twotier_statements.book \nFROM twotier_statements "
        "\nWHERE twotier_statements.digest = $1::VARCHAR",
        "digest",
    ),
}


def async_url(url: str) -> DatabaseURL:
    """``mysql://…`` → ``mysql+asyncmy://…`` and so on; explicit drivers are kept."""
    parsed = DatabaseURL.parse(url)
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


_SETTING = re.compile(r"-c\s*([A-Za-z_][A-Za-z0-9_.]*)=(\S+)")


def server_settings(url: DatabaseURL) -> tuple[DatabaseURL, dict[str, str]]:
    """A PostgreSQL URL without libpq's ``options``, and the settings they give (``-c
    search_path=sales -c statement_timeout=5000``); ValueError for anything else in it, or
    for a query parameter no connection of twotier's takes."""
    if url.get_backend_name() != "postgresql":
        return url, {}
    unknown = sorted(set(url.query) - {"options"})
    if unknown:
        raise ValueError(
            f"unknown database URL parameter {unknown[0]!r}: a PostgreSQL URL takes options "
            "(-c name=value), sslmode, sslrootcert, sslcert and sslkey"
        )
    given = url.query.get("options")
    if given is None:
        return url, {}
    text = given if isinstance(given, str) else " ".join(given)
    found = dict(_SETTING.findall(text))
    if _SETTING.sub("", text).strip():
        raise ValueError(
            f"database URL options {text!r}: twotier takes settings only, as -c name=value"
        )
    return url.difference_update_query(["options"]), found


def _utc(moment: datetime) -> datetime:
    # MySQL and SQLite hand back naive datetimes (of the UTC values stored).
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class SQLStore:
    """The declared resources' tables in a SQL database, through one pooled async engine."""

    def __init__(
        self,
        url: str,
        resources: Sequence[Resource] | None = None,
        *,
        pool_size: int = 10,
        timeout: float = 5.0,
        sqlite_synchronous: str = "full",
    ) -> None:
        given = async_url(url)
        self._sqlite_synchronous = _SYNCHRONOUS[sqlite_synchronous]
        bare, self._tls = split_tls(given)
        #: PostgreSQL's run-time settings the URL gives in libpq's ``options``
        #: (``?options=-csearch_path%3Dsales``: the tables of schema ``sales``), for every
        #: connection twotier makes.
        self.url, self.server_settings = server_settings(bare)
        #: The URL's TLS parameters as given, for a client that takes them as they are
        #: (libpq's, to psycopg2's replication connection).
        self.tls_parameters = {
            name: ca_file(str(value)) if name == "sslrootcert" else str(value)
            for name, value in given.query.items()
            if name not in bare.query
        }
        self.backend = self.url.get_backend_name()
        self.timeout = timeout  # seconds to wait for a connection (the follower's too)
        self._pool_size = pool_size
        self._engine: AsyncEngine | None = None
        self._unconnected: Dialect | None = None
        # The per-request statements' own pool (``sql_driver``); the engine's serves the rest.
        self.driver = driver_for(self, pool_size, timeout)
        self._metadata: MetaData | None = None
        self._tables: dict[str, Table] = {}
        # The store's own statements by shape (``_statement``), and the server's support for
        # RETURNING on inserts as the book recorded it (else known from the engine).
        self._statements: dict[str, Statement] = {}
        self._key_conversions: tuple[Conversion, ...] | None = None
        self._insert_returning: bool | None = None
        self._rows: dict[str, SQLRows] = {}
        for resource in resources if resources is not None else load_resources(None):
            self._rows[resource.name] = SQLRows(resource, self)

    def rows(self, resource: str) -> SQLRows:
        return self._rows[resource]

    @property
    def tls(self) -> ssl.SSLContext | None:
        """The TLS context of every connection (the bulk paths' own ones too)."""
        return self._tls

    @property
    def metadata(self) -> MetaData:
        """The resources' tables (SQLAlchemy's), made on first use."""
        if self._metadata is None:
            from sqlalchemy import MetaData

            from twotier.store.sql_schema import resource_table

            self._metadata = MetaData()
            for rows in self._rows.values():
                self._tables[rows.resource.name] = resource_table(rows.resource, self._metadata)
        return self._metadata

    def table_of(self, resource: Resource) -> Table:
        if self._metadata is None:
            self.metadata  # noqa: B018 (makes them all)
        return self._tables[resource.name]

    @property
    def tables(self) -> dict[str, Table]:
        return {name: rows.table for name, rows in self._rows.items()}

    @property
    def insert_returning(self) -> bool:
        """Whether the server returns an insert's rows (MariaDB's and PostgreSQL's
        RETURNING): as the book recorded it, else as the engine's dialect knows it."""
        if self._insert_returning is None:
            return bool(self.dialect.insert_returning)
        return self._insert_returning

    def _statement(self, shape: str, build: Callable[[], ClauseElement]) -> Statement:
        """The store's own statement of ``shape``: the book's, or ``build``'s compiled."""
        statement = self._statements.get(shape)
        if statement is None:
            first = _FIRST.get((shape, self.backend))
            if first is not None:
                sql, param = first
                statement = Statement(sql, (param,), {}, (), returns_rows=True)
            else:
                from twotier.store.sql_compile import compiled

                statement = compiled(build(), self.dialect)
            self._statements[shape] = statement
        return statement

    @property
    def engine(self) -> AsyncEngine:
        """The engine, made on first use."""
        if self._engine is None:
            self._engine = self._create_engine(self.url, self._pool_size, self.timeout)
        return self._engine

    @property
    def dialect(self) -> Dialect:
        """The engine's dialect once there is an engine (it learns what the server supports
        when it first connects: MariaDB's RETURNING); before, one of the same kind."""
        return self._engine.dialect if self._engine is not None else self._dialect

    @property
    def _dialect(self) -> Dialect:
        """The dialect of the URL's kind, made as an engine would make it, on first use."""
        if self._unconnected is None:
            kind: Any = self.url.sqlalchemy().get_dialect()
            self._unconnected = kind(dbapi=kind.import_dbapi())
        return self._unconnected

    def _create_engine(self, url: DatabaseURL, pool_size: int, timeout: float) -> AsyncEngine:
        from sqlalchemy.ext.asyncio import create_async_engine

        connect_args: dict[str, Any] = {}
        if self.backend == "sqlite":
            connect_args["timeout"] = timeout
        elif self.backend == "mysql":
            connect_args["connect_timeout"] = timeout
        elif self.backend == "postgresql":
            connect_args["timeout"] = timeout
            if self.server_settings:
                connect_args["server_settings"] = self.server_settings
        if self._tls is not None:
            connect_args["ssl"] = self._tls
        engine = create_async_engine(
            url.sqlalchemy(),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=timeout,
            pool_pre_ping=self.backend != "sqlite",
            pool_recycle=1800,
            connect_args=connect_args,
        )
        if self.backend == "sqlite":
            _configure_sqlite(engine, self._sqlite_synchronous)
        return engine

    @asynccontextmanager
    async def connect(self, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
        """A pooled connection in a transaction; database faults become StoreUnavailable."""
        try:
            with DatabaseTimer():
                async with self.engine.connect() as conn:
                    if write:
                        await conn.execution_options(twotier_write=True)
                    async with conn.begin():
                        yield conn
        except unavailable() as error:
            raise StoreUnavailable(describe(error)) from error

    def pool_usage(self) -> dict[str, int]:
        """Connections of both pools: the driver's (per-request statements) and the
        engine's (the rest)."""
        usage = self.driver.pool_usage()
        if self._engine is None:
            return usage
        pool = self._engine.pool
        checked_out = getattr(pool, "checkedout", None)
        checked_in = getattr(pool, "checkedin", None)
        if checked_out is None or checked_in is None:  # a pool that keeps nothing
            return usage
        return {
            "in_use": usage.get("in_use", 0) + checked_out(),
            "idle": usage.get("idle", 0) + checked_in(),
        }

    # -- schema -------------------------------------------------------------------------

    async def init_schema(
        self, *, dry_run: bool = False, if_changed: bool = False
    ) -> list[SchemaChange]:
        made = self._made()
        if if_changed and not dry_run and await self._made_before(made):
            return []
        if not await self._ensure_database(create=not dry_run):
            # A dry run makes nothing, not even the database: what there is to plan is all.
            return [
                SchemaChange(
                    f"create database {self.url.database}, then every declared table in it "
                    "(run db init --dry-run again once it exists to see their statements)"
                )
            ]
        from sqlalchemy import insert, select, update

        from twotier.store.sql_adopt import make_plan
        from twotier.store.sql_schema import meta

        async with self._schema_locked() as conn:
            plan = await conn.run_sync(self._plan)
            if plan.problems:
                raise SchemaMismatch(plan.problems)
            if dry_run:
                return plan.shown
            await conn.run_sync(make_plan, plan)
            facts = {row.name: row.value for row in await conn.execute(select(meta))}
            if _IDENTITY not in facts:
                await conn.execute(insert(meta), {"name": _IDENTITY, "value": new_id()})
            if _MADE not in facts:
                await conn.execute(insert(meta), {"name": _MADE, "value": made})
            elif facts[_MADE] != made:
                await conn.execute(update(meta).where(meta.c.name == _MADE).values(value=made))
            texts = await self._write_book(conn, made)
        self._take(texts)
        return plan.shown

    async def _made_before(self, made: str) -> bool:
        """Whether the database records ``made`` as made, and takes its book if so (SQLite
        keeps none: its record alone). A book missing makes the caller plan, which writes
        it."""
        if self.backend == "sqlite":
            return await self._recorded(_MADE) == made
        return await self._read_book(made)

    def _made(self) -> str:
        """What ``init_schema`` makes of this declaration, as one digest: this version of
        twotier (which makes the tables and indexes, and compiles the statements), the kind
        of database, and each resource as declared. Recorded in the database once they are
        there; a process that finds it unchanged (``if_changed``) may skip the plan and its
        lock, and take the statements kept for it (``_read_book``)."""
        digest = hashlib.sha256(__version__.encode())
        digest.update(self.backend.encode())
        for rows in self._rows.values():
            digest.update(repr(rows.resource).encode())
        return digest.hexdigest()

    # The book: the statements a process runs first, compiled once, kept in the database.

    def _book(self) -> dict[str, dict[str, Any]]:
        """Each resource's statements (``SQLRows.book``) and the store's own, compiled for
        the database as the engine knows it (connected: MariaDB's RETURNING)."""
        own = {
            shape: data
            for shape, statement in (
                ("keys", self._keys()),
                ("ping", self._ping()),
                ("rewriting", self._rewriting()),
            )
            if (data := statement.kept()) is not None
        }
        book: dict[str, dict[str, Any]] = {
            _STORE: {
                "statements": own,
                "key_row": named(self._keys_conversions),
                "insert_returning": self.insert_returning,
            }
        }
        for name, rows in self._rows.items():
            book[name] = rows.book()
        return book

    async def _write_book(self, conn: AsyncConnection, made: str) -> dict[str, str]:
        """Keep the book for ``made`` on ``conn``, which holds the schema's lock (so that
        processes starting together write it one after the other) and has connected (so
        the statements are compiled for the server as it is: MariaDB's RETURNING); the
        book's rows, each as text by name (none on SQLite, which runs on the engine)."""
        if self.backend == "sqlite":
            return {}
        from sqlalchemy import delete, insert

        from twotier.store.sql_schema import statements

        texts = {name: orjson.dumps(book).decode() for name, book in self._book().items()}
        await conn.execute(delete(statements))
        await conn.execute(
            insert(statements),
            [{"name": name, "digest": made, "book": text} for name, text in texts.items()],
        )
        return texts

    async def _read_book(self, made: str) -> bool:
        """Take the statements kept for ``made``, read in one query on the driver; whether
        the book was there, whole (else the statements are compiled as they are needed)."""
        if self.backend == "sqlite":
            return False
        try:
            found = await self.driver.fetch_all(self._fact_or_book("book"), {"digest": made})
        except Exception:  # no such table yet: the plan makes it
            return False
        return self._take({str(name): str(text) for name, text in found})

    def _take(self, texts: dict[str, str]) -> bool:
        """Take the book's statements (each row's text by its name) if the book is whole and
        this version reads it, and run them as kept from now on; whether it did."""
        if not texts:
            return False
        try:
            books = {name: orjson.loads(text) for name, text in texts.items()}
            own = books.pop(_STORE)
            if set(books) != set(self._rows):
                return False
            conversions = by_name(own["key_row"])
            kept = {shape: Statement.from_kept(data) for shape, data in own["statements"].items()}
            for name, book in books.items():
                self._rows[name].keep(book)
        except (KeyError, TypeError, ValueError):  # a book another version wrote
            return False
        self._statements |= kept
        self._key_conversions = conversions
        self._insert_returning = bool(own["insert_returning"])
        return True

    async def _recorded(self, name: str) -> str | None:
        """The meta table's ``name``, read on the driver; None if the database has no such
        row, or no meta table, or is not there yet (``init_schema`` then makes them)."""
        try:
            row = await self.driver.fetch_one(self._fact_or_book("fact"), {"name": name})
        except Exception:  # no table or no database yet: the plan finds out what is missing
            return None
        return None if row is None else str(row[0])

    async def detach(self, *, dry_run: bool = False) -> Detachment:
        from twotier.store.sql_adopt import run_statements
        from twotier.store.sql_detach import plan_detach

        async with self._schema_locked() as conn:
            detachment = await conn.run_sync(plan_detach)
            if not dry_run:
                for change in detachment.removed:
                    await conn.run_sync(run_statements, change.statements)
                    log.info("schema changed", extra={"change": change.line})
        return detachment

    async def introspect(self, tables: Sequence[str] | None = None) -> list[Introspected]:
        from twotier.store.sql_introspect import introspect

        async with self.connect() as conn:
            return await conn.run_sync(introspect, tables)

    async def grant_follower(self, user: FollowerUser) -> None:
        if self.backend == "sqlite":
            raise StoreRefused("SQLite has no users: its follower runs in the server")
        from twotier.store.sql_follower import grant_follower

        async with self._schema_locked() as conn:
            tables = [rows.table.name for rows in self._rows.values()]
            for line in await grant_follower(conn, self.url.database, tables, user):
                log.info(line)

    @asynccontextmanager
    async def _schema_locked(self) -> AsyncIterator[AsyncConnection]:
        """A connection holding the lock on schema changes: several processes (workers,
        tasks) may start at once; one changes the schema while the others wait, then
        find it done."""
        from sqlalchemy import text

        try:
            async with self.connect(write=True) as conn:  # SQLite: BEGIN IMMEDIATE
                if self.backend == "postgresql":
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), _LOCK)
                elif self.backend == "mysql":
                    await conn.execute(text("SELECT GET_LOCK(:name, :seconds)"), _LOCK)
                try:
                    yield conn
                finally:
                    if self.backend == "mysql":  # DDL commits at once there: release by hand
                        await conn.execute(text("SELECT RELEASE_LOCK(:name)"), _LOCK)
        except StoreUnavailable:
            raise
        except unavailable() as error:
            raise StoreUnavailable(describe(error)) from error

    def _plan(self, conn: Connection) -> Plan:
        """What the declared tables and twotier's own need of the database (``sql_adopt``:
        tables created, existing ones adopted, never anything dropped or rewritten)."""
        from sqlalchemy import inspect

        from twotier.store.sql_adopt import creating, plan_schema
        from twotier.store.sql_schema import access_metadata

        plan = plan_schema(conn, [(rows.resource, rows.table) for rows in self._rows.values()])
        present = inspect(conn).get_table_names()
        own = [table for table in access_metadata.sorted_tables if table.name not in present]
        plan.changes[:0] = [
            creating(conn, table, f"create table {table.name} (twotier's own)", own=True)
            for table in own
        ]
        return plan

    async def _ensure_database(self, *, create: bool = True) -> bool:
        """Create the database named in the URL if the server does not have it yet (not
        ``create``: only say); whether it is there now."""
        from sqlalchemy import exc, text
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.pool import NullPool

        name = self.url.database
        if self.backend == "sqlite":
            if not name or name == ":memory:":
                return True
            if not create:
                return await asyncio.to_thread(Path(name).exists)
            Path(name).parent.mkdir(parents=True, exist_ok=True)
            return True
        if not name:
            raise ValueError("the database URL must name a database")
        server_db = "postgres" if self.backend == "postgresql" else None
        admin = create_async_engine(
            self.url.set(database=server_db).sqlalchemy(),
            isolation_level="AUTOCOMMIT",
            poolclass=NullPool,
            connect_args={"ssl": self._tls} if self._tls is not None else {},
        )
        try:
            async with admin.connect() as conn:
                quoted = conn.dialect.identifier_preparer.quote(name)
                if self.backend == "mysql":
                    query = "SELECT 1 FROM information_schema.schemata WHERE schema_name = :name"
                else:
                    query = "SELECT 1 FROM pg_database WHERE datname = :name"
                exists = await conn.scalar(text(query), {"name": name})
                if not create:
                    return bool(exists)
                if self.backend == "mysql":
                    await conn.execute(
                        text(f"CREATE DATABASE IF NOT EXISTS {quoted} CHARACTER SET utf8mb4")
                    )
                    return True
                if not exists:
                    try:
                        await conn.execute(text(f"CREATE DATABASE {quoted}"))
                    except exc.ProgrammingError as error:  # created meanwhile by another process
                        if "already exists" not in str(error):
                            raise
                return True
        except unavailable() as error:
            raise StoreUnavailable(describe(error)) from error
        finally:
            await admin.dispose()

    async def referencing(self, table: str) -> list[str]:
        """The tables whose foreign keys point at ``table`` (itself left out)."""
        from sqlalchemy import inspect

        from twotier.store.sql_names import NameRules

        def find(conn: Connection) -> list[str]:
            rules = NameRules.of(conn)
            inspector = inspect(conn)
            return [
                other
                for other in inspector.get_table_names()
                if not rules.same_table(other, table)
                and any(
                    rules.same_table(str(key.get("referred_table")), table)
                    for key in inspector.get_foreign_keys(other)
                )
            ]

        async with self.connect() as conn:
            return await conn.run_sync(find)

    async def drop_schema(self) -> None:
        """Drop the resources' tables (tests use it); the database and the keys stay."""
        from sqlalchemy import delete, inspect

        from twotier.store.sql_schema import meta, statements

        async with self.engine.begin() as conn:
            await conn.run_sync(self.metadata.drop_all, checkfirst=True)
            present = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            # What init_schema made is gone: the next start plans again.
            if meta.name in present:
                await conn.execute(delete(meta).where(meta.c.name == _MADE))
            if statements.name in present:
                await conn.execute(delete(statements))

    # -- API keys -----------------------------------------------------------------------

    async def add_key(self, record: KeyRecord) -> None:
        from sqlalchemy import insert

        from twotier.store.sql_schema import api_keys

        async with self.connect(write=True) as conn:
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
        records = []
        for row in await self.driver.fetch_all(self._keys(), {}):
            key_id, name, role, secret_hash, created_at, revoked_at = converted(
                row, self._keys_conversions
            )
            records.append(
                KeyRecord(
                    id=key_id,
                    name=name,
                    role=Role(role),
                    secret_hash=secret_hash,
                    created_at=_utc(created_at),
                    revoked_at=_utc(revoked_at) if revoked_at else None,
                )
            )
        return records

    async def revoke_key(self, key_id: str, when: datetime) -> bool:
        from sqlalchemy import update

        from twotier.store.sql_schema import api_keys

        stmt = (
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=self._stored_time(when))
        )
        async with self.connect(write=True) as conn:
            return bool((await conn.execute(stmt)).rowcount)

    async def identity(self) -> str:
        row = await self.driver.fetch_one(self._fact_or_book("fact"), {"name": _IDENTITY})
        if row is None:
            raise StoreUnavailable("the database has no identity yet: run twotier db init")
        return str(row[0])

    async def learn(self) -> None:
        """Which resources' tables the database rewrites rows of as they are written: one
        catalogue query at start, so that no request pays for it (``SQLRows._rewrites``)."""
        tables = await self.rewriting_tables()
        for rows in self._rows.values():
            rows.rewritten_among(tables)

    async def rewriting_tables(self) -> set[str]:
        """The tables whose rows the database may change as they are written
        (``sql_triggers.rewriting_sql``), as its catalogue names them."""
        return {str(row[0]) for row in await self.driver.fetch_all(self._rewriting(), {})}

    async def ping(self) -> None:
        await self.driver.fetch_one(self._ping(), {})

    # The store's own statements (the book keeps them, but the first two).

    def _fact_or_book(self, kind: str) -> Statement:
        """A fact of the meta table by name, or the book's rows by digest."""

        def build() -> ClauseElement:
            from twotier.store.sql_schema import book_query, fact_query

            return fact_query() if kind == "fact" else book_query()

        return self._statement(kind, build)

    def _keys(self) -> Statement:
        def build() -> ClauseElement:
            from sqlalchemy import select

            from twotier.store.sql_schema import api_keys

            return select(*api_keys.c).order_by(api_keys.c.created_at)

        return self._statement("keys", build)

    @property
    def _keys_conversions(self) -> tuple[Conversion, ...]:
        if self._key_conversions is None:
            from twotier.store.sql_compile import row_conversions
            from twotier.store.sql_schema import api_keys

            self._key_conversions = row_conversions(list(api_keys.c), self.dialect)
        return self._key_conversions

    def _ping(self) -> Statement:
        def build() -> ClauseElement:
            from sqlalchemy import text

            return text("SELECT 1")

        return self._statement("ping", build)

    def _rewriting(self) -> Statement:
        def build() -> ClauseElement:
            from sqlalchemy import text

            from twotier.store.sql_triggers import rewriting_sql

            return text(rewriting_sql(self.backend))

        return self._statement("rewriting", build)

    async def close(self) -> None:
        await self.driver.close()
        if self._engine is not None:
            await self._engine.dispose()


#: SQLite's synchronous modes by their setting (TWOTIER_SQLITE_SYNCHRONOUS).
_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}


def _configure_sqlite(engine: AsyncEngine, synchronous: str) -> None:
    """WAL for concurrent readers; BEGIN IMMEDIATE for writes so they queue, not deadlock;
    ``synchronous``: FULL syncs the log at every commit (an acknowledged write survives the
    OS crashing), NORMAL only at checkpoints (faster; the last commits can be lost then)."""
    from sqlalchemy import event

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see below).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("twotier_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
