"""What ``db detach`` takes out of a SQL database: what twotier added for its own use.

Planned whole from the catalog and the ledger ``db init`` keeps (``sql_schema.made``), then
made in one transaction where the database takes DDL in one (SQLite, PostgreSQL), statement
by statement on MySQL, in an order that keeps the user's own writes working at every step
(the triggers that use the version column go before the column):

1. PostgreSQL: the follower's replication slots (refused while a follower streams from
   one: stop it first) and its publication;
2. the triggers (``twotier_<table>_version_ins`` and the like) and PostgreSQL's trigger
   function;
3. PostgreSQL: a table's replica identity, back to the one it had;
4. the ``version`` column, from every table twotier added it to or created;
5. the indexes twotier added to tables it adopted;
6. twotier's own tables (API keys, the database's identity, SQLite's change table, the
   ledger);
7. the follower's database user, where twotier created it.

Nothing that holds the user's data is removed: a table twotier created, or a column it
added for a declared field, is kept and named. A ``version`` column the ledger does not
show as twotier's (the table came with one, or a twotier older than the ledger added it)
is kept and named too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, inspect, select, text

from twotier.errors import StoreRefused
from twotier.store.base import Detachment, SchemaChange
from twotier.store.sql_follower import PUBLICATION
from twotier.store.sql_names import NameRules
from twotier.store.sql_schema import made
from twotier.store.sql_statement import VERSION
from twotier.store.sql_triggers import OWN_TABLES, PG_FUNCTION, TRIGGER_NAME

#: The PostgreSQL follower's slots (``follow.pg_logical.slot_name``).
_SLOT = "^twotier_[0-9a-f]{16}$"


@dataclass
class _Ledger:
    """The ledger's rows by kind: (table, name, what it was)."""

    rows: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)

    def of(self, kind: str) -> list[tuple[str, str, str]]:
        return self.rows.get(kind, [])


def plan_detach(conn: Connection) -> Detachment:
    """What detaching the database behind ``conn`` removes, and what it keeps; changes
    nothing."""
    dialect = conn.dialect.name
    quote = conn.dialect.identifier_preparer.quote
    rules = NameRules.of(conn)
    inspector = inspect(conn)
    tables = inspector.get_table_names()
    ledger = _read_ledger(conn, rules, tables)
    removed: list[SchemaChange] = []
    kept: list[str] = []

    def remove(line: str, *statements: str) -> None:
        removed.append(SchemaChange(line, statements))

    if dialect == "postgresql":
        for slot, active in conn.execute(
            text(
                "SELECT slot_name, active FROM pg_replication_slots "
                "WHERE database = current_database() AND slot_name ~ :pattern"
            ),
            {"pattern": _SLOT},
        ).all():
            if active:
                raise StoreRefused(
                    f"a follower is streaming from replication slot {slot}: stop every "
                    "follower (twotier follow, serve --follow) before db detach"
                )
            remove(
                f"drop replication slot {slot} (the follower's)",
                f"SELECT pg_drop_replication_slot('{slot}')",
            )
        if conn.scalar(
            text("SELECT 1 FROM pg_publication WHERE pubname = :name"), {"name": PUBLICATION}
        ):
            remove(f"drop publication {PUBLICATION}", f"DROP PUBLICATION {PUBLICATION}")
    triggers = _triggers(conn)
    for trigger, table in triggers:
        on = f" ON {quote(table)}" if dialect == "postgresql" else ""
        remove(f"{table}: drop trigger {trigger}", f"DROP TRIGGER {quote(trigger)}{on}")
    if dialect == "postgresql":
        if conn.scalar(
            text(
                "SELECT 1 FROM pg_proc WHERE proname = :name "
                "AND pronamespace = CAST(current_schema() AS regnamespace)"
            ),
            {"name": PG_FUNCTION},
        ):
            remove(f"drop function {PG_FUNCTION}", f"DROP FUNCTION {PG_FUNCTION}()")
        for table, _, was in ledger.of("identity"):
            restored = _replica_identity(was, quote)
            remove(
                f"{table}: replica identity back to {restored.lower()}",
                f"ALTER TABLE {quote(table)} REPLICA IDENTITY {restored}",
            )
    created = {table for table, _, _ in ledger.of("table")}
    added = {(table, name) for table, name, _ in ledger.of("column")}
    for table in tables:
        if table in OWN_TABLES:
            continue
        columns = [column["name"] for column in inspector.get_columns(table)]
        version = rules.column(VERSION, columns)
        if version is None:
            continue
        if table in created or (table, version) in added:
            remove(
                f"{table}: drop column {version}",
                f"ALTER TABLE {quote(table)} DROP COLUMN {quote(version)}",
            )
        elif any(rules.same_table(on, table) for _, on in triggers):
            kept.append(
                f"{table}.{version} kept: twotier's ledger does not show it made it (the "
                "table had it, or an older twotier added it); drop it yourself if it is "
                "twotier's"
            )
    for table, name, _ in ledger.of("column"):
        if rules.same_column(name, VERSION) or table in created:
            continue
        kept.append(f"{table}.{name} kept: twotier added it for a declared field; it holds data")
    indexes = {
        table: {str(index["name"]) for index in inspector.get_indexes(table)}
        for table in tables
        if table not in OWN_TABLES
    }
    for table, name, _ in ledger.of("index"):
        if table in created or name not in indexes.get(table, ()):
            continue
        on = f" ON {quote(table)}" if dialect in ("mysql", "mariadb") else ""
        remove(f"{table}: drop index {name}", f"DROP INDEX {quote(name)}{on}")
    for table in sorted(created):
        kept.append(f"{table} kept: twotier created it for a resource; its rows are yours")
    for table in OWN_TABLES:
        if table in tables:
            remove(f"drop table {table} (twotier's own)", f"DROP TABLE {quote(table)}")
    for _, name, _ in ledger.of("user"):
        remove(f"drop user {name} (the follower's)", _drop_user(dialect, name))
    return Detachment(removed, kept)


def _read_ledger(conn: Connection, rules: NameRules, tables: Sequence[str]) -> _Ledger:
    ledger = _Ledger()
    if rules.table(made.name, tables) is None:
        return ledger
    for kind, table, name, was in conn.execute(select(made)).all():
        # The table as the database now spells it (it may fold names).
        found = rules.table(table, tables) if table else ""
        if found is None:
            continue  # the table is gone: nothing of it to take out
        ledger.rows.setdefault(kind, []).append((found, name, was))
    return ledger


def _triggers(conn: Connection) -> list[tuple[str, str]]:
    """twotier's triggers (by their names), each with its table."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        query = "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'"
    elif dialect == "postgresql":
        query = (
            "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND c.relnamespace = CAST(current_schema() AS regnamespace)"
        )
    else:
        query = (
            "SELECT trigger_name, event_object_table FROM information_schema.triggers "
            "WHERE trigger_schema = DATABASE()"
        )
    return [
        (str(trigger), str(table))
        for trigger, table in conn.execute(text(query)).all()
        if TRIGGER_NAME.fullmatch(str(trigger))
    ]


def _replica_identity(was: str, quote: Callable[[str], str]) -> str:
    """``REPLICA IDENTITY``'s setting from what the ledger kept: d, n, or i:<index>."""
    if was.startswith("i:"):
        return f"USING INDEX {quote(was[2:])}"
    return "NOTHING" if was == "n" else "DEFAULT"


def _drop_user(dialect: str, name: str) -> str:
    """The statement dropping the follower's user ``name`` (``user@host`` on MySQL), whose
    parts ``sql_follower`` checked when it made it."""
    if dialect == "postgresql":
        return f"DROP ROLE IF EXISTS {name}"
    user, _, host = name.partition("@")
    return f"DROP USER IF EXISTS '{user}'@'{host}'"
