"""The change-log follower's own database user, and what it reads that only an owner makes.

A follower reads the change log and the database's identity (``twotier_meta``), nothing
else, so it connects as a user of its own that may do exactly that:

- MySQL, MariaDB, Aurora MySQL: ``REPLICATION SLAVE`` (the binlog stream) and
  ``REPLICATION CLIENT`` (where the binlog ends; MariaDB's ``BINLOG MONITOR``), and
  ``SELECT`` on ``twotier_meta``. Column names come from the binlog itself
  (``binlog_row_metadata=FULL``), so it reads no table.
- PostgreSQL, Aurora PostgreSQL: ``LOGIN`` and ``REPLICATION`` (on RDS and Aurora, where no
  one may give that attribute, membership of ``rds_replication``), and ``SELECT`` on
  ``twotier_meta``. The publication of the declared tables and their ``REPLICA IDENTITY
  FULL`` need the tables' owner: made here, by the user who made the tables.

The password is a bound parameter on MySQL; PostgreSQL takes none in ``CREATE ROLE``, so
the server quotes it (``format('%L')``) and the statement runs as the server wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text

from twotier.store.base import FollowerUser
from twotier.store.sql_adopt import record
from twotier.store.sql_follower_names import check_user_name, mysql_host
from twotier.store.sql_schema import Made, made, meta

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

#: The publication the PostgreSQL follower decodes.
PUBLICATION = "twotier"


async def grant_follower(
    conn: AsyncConnection, database: str | None, tables: Sequence[str], user: FollowerUser
) -> list[str]:
    """Make ``user`` with the follower's privileges (or bring its password and grants up
    to date); what was done, for the log."""
    check_user_name(user.name)
    if conn.dialect.name == "postgresql":
        return await publish(conn, tables) + await _postgresql(conn, user)
    return await _mysql(conn, database, user)


async def _mysql(conn: AsyncConnection, database: str | None, user: FollowerUser) -> list[str]:
    host = mysql_host(user.host)  # checked with the settings (check_host)
    account = {"user": user.name, "host": host}
    secret = account | {"password": user.password}
    quote = conn.dialect.identifier_preparer.quote
    exists = await conn.scalar(
        text("SELECT 1 FROM mysql.user WHERE User = :user AND Host = :host"), account
    )
    for verb in ("CREATE USER IF NOT EXISTS", "ALTER USER"):
        await conn.execute(text(f"{verb} :user@:host IDENTIFIED BY :password"), secret)
    if not exists:
        await _record(conn, ("user", "", f"{user.name}@{host}"))
    # The binary log's stream and position (no other privilege of replication exists: it
    # covers every database's changes, which no grant narrows), and twotier's identity.
    await conn.execute(
        text("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO :user@:host"), account
    )
    table = f"{quote(database)}.{quote(meta.name)}" if database else quote(meta.name)
    await conn.execute(text(f"GRANT SELECT ON {table} TO :user@:host"), account)
    done = [f"follower user {user.name}@{host}: replication, and reading {meta.name}"]
    others = await conn.execute(
        text("SELECT Host FROM mysql.user WHERE User = :user AND Host <> :host"), account
    )
    for (other,) in others.all():  # the same user, from hosts no longer meant
        await conn.execute(text("DROP USER :user@:other"), {"user": user.name, "other": other})
        done.append(f"follower user {user.name}@{other}: dropped")
    return done


async def _record(conn: AsyncConnection, thing: Made, was: str = "") -> None:
    """Note ``thing`` in the ledger ``db detach`` reads, where the database has one (it
    has, once ``db init`` ran with this version)."""
    if await conn.run_sync(lambda sync: inspect(sync).has_table(made.name)):
        await conn.run_sync(record, [thing], was)


async def _postgresql(conn: AsyncConnection, user: FollowerUser) -> list[str]:
    exists = await conn.scalar(
        text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": user.name}
    )
    statement = await conn.scalar(
        text("SELECT format(CAST(:template AS text), CAST(:name AS text), CAST(:pw AS text))"),
        {
            "template": f"{'ALTER' if exists else 'CREATE'} ROLE %I LOGIN PASSWORD %L",
            "name": user.name,
            "pw": user.password,
        },
    )
    await conn.exec_driver_sql(str(statement))
    if not exists:
        await _record(conn, ("user", "", user.name))
    # The name matched USER_NAME: it is an identifier as it stands.
    if await conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = 'rds_replication'")):
        await conn.execute(text(f"GRANT rds_replication TO {user.name}"))
    else:
        await conn.execute(text(f"ALTER ROLE {user.name} REPLICATION"))
    await conn.execute(text(f"GRANT SELECT ON {meta.name} TO {user.name}"))
    return [f"follower user {user.name}: replication, and reading {meta.name}"]


async def publish(conn: AsyncConnection, tables: Sequence[str]) -> list[str]:
    """The publication of ``tables``, each with ``REPLICA IDENTITY FULL`` (an update or a
    deletion then carries the whole old row, whose lookup values the follower moves),
    made or completed as needed; what was done."""
    quote = conn.dialect.identifier_preparer.quote
    published = set(
        (
            await conn.execute(
                text("SELECT tablename FROM pg_publication_tables WHERE pubname = :name"),
                {"name": PUBLICATION},
            )
        ).scalars()
    )
    exists = await conn.scalar(
        text("SELECT 1 FROM pg_publication WHERE pubname = :name"), {"name": PUBLICATION}
    )
    missing = [table for table in tables if table not in published]
    done = []
    if not exists:
        names = ", ".join(quote(table) for table in missing)
        await conn.execute(text(f"CREATE PUBLICATION {PUBLICATION} FOR TABLE {names}"))
        done.append(f"publication {PUBLICATION}: {', '.join(missing)}")
    elif missing:
        names = ", ".join(quote(table) for table in missing)
        await conn.execute(text(f"ALTER PUBLICATION {PUBLICATION} ADD TABLE {names}"))
        done.append(f"publication {PUBLICATION}: added {', '.join(missing)}")
    for table in tables:
        identity = await conn.scalar(
            text("SELECT CAST(relreplident AS text) FROM pg_class WHERE oid = to_regclass(:table)"),
            {"table": quote(table)},
        )
        if identity != "f":
            was = str(identity)
            if was == "i":
                index = await conn.scalar(
                    text(
                        "SELECT CAST(indexrelid::regclass AS text) FROM pg_index "
                        "WHERE indrelid = to_regclass(:table) AND indisreplident"
                    ),
                    {"table": quote(table)},
                )
                was = f"i:{index}"
            await _record(conn, ("identity", table, table), was)
            await conn.execute(text(f"ALTER TABLE {quote(table)} REPLICA IDENTITY FULL"))
            done.append(f"{table}: replica identity full")
    return done
