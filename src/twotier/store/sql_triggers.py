"""Row versions the database keeps itself, whoever writes: triggers on every resource table.

twotier's own writes set the version (``versions``: born from the clock, one more with each
update). A write that bypasses twotier — another service, an operator's ``UPDATE``, the
seed's own ``INSERT`` — would leave it alone: an updated row would keep its version, and a
fill that read it before the change could later win over the follower's invalidation (equal
versions never replace each other). So each table gets triggers that finish what such a
write leaves undone, and nothing else:

- an insert at the column's default (1, or below) is born from the database's clock, in
  microseconds, like twotier's own rows, so a key that comes back after a deletion starts
  above its old tombstone;
- an update that does not raise the version raises it by one.

twotier's own writes always pass both tests, so the triggers change nothing of theirs. They
are created by ``db init`` (with the table, or when adopting one), once: an existing trigger
is left as it is.

On SQLite, which has no change log of its own, three more triggers per table record every
committed change (the row before and after, as JSON, at its new version) in
``twotier_changes``, which the follower reads (``twotier.follow.sqlite_log``): an insert there
costs a write little more than the row's own, and nothing while nothing changes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import Connection, Table, text

from twotier.store.sql_names import NameRules
from twotier.store.sql_schema import Made, access_metadata
from twotier.store.sql_statement import VERSION

#: The PostgreSQL function every resource table's trigger calls (one per database).
PG_FUNCTION = "twotier_row_version"
#: SQLite: the table the change-recording triggers write to.
CHANGES_TABLE = "twotier_changes"
#: SQLite: how far each live follower has applied the changes (a bulk load waits on it).
PROGRESS_TABLE = "twotier_follower_progress"
#: SQLite's clock in microseconds since 1970 (julianday('now') is the statement's moment,
#: to the millisecond, the same for every trigger the statement fires).
_SQLITE_NOW_US = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"


#: Every trigger this module names (``trigger_names``, ``change_log_sql``): twotier's.
TRIGGER_NAME = re.compile(r"twotier_.+_(version_ins|version_upd|log_ins|log_upd|log_del)")
#: twotier's own tables, never a resource's: dropped by name by ``db detach``.
OWN_TABLES = (
    *(table.name for table in access_metadata.sorted_tables),
    CHANGES_TABLE,
    PROGRESS_TABLE,
)


def trigger_names(table: Table) -> tuple[str, str]:
    """The insert and update triggers of ``table`` (within every dialect's 63 characters)."""
    return f"twotier_{table.name[:44]}_version_ins", f"twotier_{table.name[:44]}_version_upd"


#: A trigger (or table) still to make: what it is (one line, for the operator), its
#: statements, and what they make (for the ledger).
Planned = tuple[str, list[str], list[Made]]


def version_trigger_sql(
    conn: Connection, rules: NameRules, table: Table, keys: Sequence[str], shown: str
) -> list[Planned]:
    """The version triggers ``table`` lacks (all of them if the table is yet to be made;
    ``keys``: the key's columns; ``shown``: its name as the database spells it)."""
    dialect = conn.dialect.name
    quote = conn.dialect.identifier_preparer.quote
    name, version = quote(table.name), quote(VERSION)
    the_row = " AND ".join(f"{quote(key)} = NEW.{quote(key)}" for key in keys)
    on_insert, on_update = trigger_names(table)
    if dialect == "postgresql":
        return _postgresql(conn, shown, name, on_insert)
    if dialect == "sqlite":
        # SQLite's triggers cannot change the row being written: they write it again after
        # it (recursive triggers are off, so that write fires nothing).
        now_us = _SQLITE_NOW_US
        bodies = {
            on_insert: f"AFTER INSERT ON {name} FOR EACH ROW WHEN NEW.{version} <= 1 "
            f"BEGIN UPDATE {name} SET {version} = {now_us} WHERE {the_row}; END",
            on_update: f"AFTER UPDATE ON {name} FOR EACH ROW WHEN NEW.{version} <= OLD.{version} "
            f"BEGIN UPDATE {name} SET {version} = OLD.{version} + 1 "
            f"WHERE {the_row}; END",
        }
    else:
        # UNIX_TIMESTAMP(NOW(6)) is the statement's moment with its microseconds (a DECIMAL).
        bodies = {
            on_insert: f"BEFORE INSERT ON {name} FOR EACH ROW IF NEW.{version} <= 1 THEN "
            f"SET NEW.{version} = CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS UNSIGNED); END IF",
            on_update: f"BEFORE UPDATE ON {name} FOR EACH ROW IF NEW.{version} <= OLD.{version} "
            f"THEN SET NEW.{version} = OLD.{version} + 1; END IF",
        }
    return _missing(conn, rules, table.name, bodies, shown)


def _postgresql(conn: Connection, table: str, name: str, trigger: str) -> list[Planned]:
    present = conn.execute(
        text(
            "SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE c.oid = to_regclass(:table) AND t.tgname = :trigger"
        ),
        {"table": name, "trigger": trigger},
    ).first()
    if present:
        return []
    created = (
        f"CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE ON {name} "
        f"FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}()"
    )
    return [(f"{table}: create trigger {trigger}", [created], [("trigger", table, trigger)])]


def pg_function_sql() -> Planned:
    """PostgreSQL: the one function every table's version trigger calls (it names the
    column, which every table has), made or replaced before the triggers that call it."""
    function = (
        f"CREATE OR REPLACE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        f"  IF TG_OP = 'INSERT' THEN\n"
        f"    IF NEW.{VERSION} <= 1 THEN\n"
        f"      NEW.{VERSION} := CAST(extract(epoch FROM clock_timestamp()) * 1000000 AS bigint);\n"
        "    END IF;\n"
        f"  ELSIF NEW.{VERSION} <= OLD.{VERSION} THEN\n"
        f"    NEW.{VERSION} := OLD.{VERSION} + 1;\n"
        "  END IF;\n"
        "  RETURN NEW;\n"
        "END $$"
    )
    return f"create function {PG_FUNCTION}", [function], [("function", "", PG_FUNCTION)]


def _missing(
    conn: Connection, rules: NameRules, table: str, bodies: dict[str, str], shown: str
) -> list[Planned]:
    """Each trigger of ``bodies`` (name: what follows ``CREATE TRIGGER name``) that
    ``table`` lacks (``shown``: its name as the database spells it)."""
    if conn.dialect.name == "sqlite":
        query = "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'"
    else:
        query = (
            "SELECT trigger_name, event_object_table FROM information_schema.triggers "
            "WHERE trigger_schema = DATABASE()"
        )
    # SQLite takes a trigger's name in any case, as every name.
    fold = str.lower if conn.dialect.name == "sqlite" else str
    present = {
        fold(trigger)
        for trigger, on in conn.execute(text(query)).all()
        if rules.same_table(on, table)
    }
    return [
        (
            f"{shown}: create trigger {trigger}",
            [f"CREATE TRIGGER {trigger} {body}"],
            [("trigger", shown, trigger)],
        )
        for trigger, body in bodies.items()
        if fold(trigger) not in present
    ]


def change_log_sql(
    conn: Connection,
    rules: NameRules,
    table: Table,
    columns: tuple[str, ...],
    shown: str,
    binary: frozenset[str] = frozenset(),
) -> list[Planned]:
    """SQLite: the triggers recording ``table``'s changes in the changes table that it
    lacks (``columns``: the declared ones, key first; ``binary``: those holding bytes,
    which a JSON image carries as hex)."""
    quote = conn.dialect.identifier_preparer.quote
    name, version = quote(table.name), quote(VERSION)

    def value(row: str, column: str) -> str:
        held = f"{row}.{quote(column)}"
        # hex(NULL) is '': a null stays null.
        return (
            f"CASE WHEN {held} IS NULL THEN NULL ELSE hex({held}) END" if column in binary else held
        )

    def image(row: str, version_sql: str) -> str:
        pairs = [f"'{column}', {value(row, column)}" for column in columns]
        return f"json_object({', '.join(pairs)}, '{VERSION}', {version_sql})"

    # The version the row ends at, as the version triggers above leave it.
    born = f"CASE WHEN NEW.{version} <= 1 THEN {_SQLITE_NOW_US} ELSE NEW.{version} END"
    moved = (
        f"CASE WHEN NEW.{version} <= OLD.{version} THEN OLD.{version} + 1 ELSE NEW.{version} END"
    )
    at = "(julianday('now') - 2440587.5) * 86400.0"
    record = f"INSERT INTO {CHANGES_TABLE} (tbl, old, new, at) VALUES ('{table.name}', "
    log = f"twotier_{table.name[:44]}_log"
    bodies = {
        f"{log}_ins": f"AFTER INSERT ON {name} FOR EACH ROW BEGIN {record}"
        f"NULL, {image('NEW', born)}, {at}); END",
        f"{log}_upd": f"AFTER UPDATE ON {name} FOR EACH ROW BEGIN {record}"
        f"{image('OLD', f'OLD.{version}')}, {image('NEW', moved)}, {at}); END",
        f"{log}_del": f"AFTER DELETE ON {name} FOR EACH ROW BEGIN {record}"
        f"{image('OLD', f'OLD.{version}')}, NULL, {at}); END",
    }
    return _missing(conn, rules, table.name, bodies, shown)


def changes_table_sql(conn: Connection) -> list[Planned]:
    """SQLite: the changes table (a change with neither image is a bulk load of the table:
    all of it may have changed), and the followers' progress through it, if missing."""
    present = set(
        conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'")).scalars()
    )
    planned: list[Planned] = []
    if CHANGES_TABLE not in present:
        planned.append(
            (
                f"create table {CHANGES_TABLE} (the changes the follower reads)",
                [
                    f"CREATE TABLE {CHANGES_TABLE} (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                    "tbl TEXT NOT NULL, old TEXT, new TEXT, at REAL NOT NULL)"
                ],
                [],
            )
        )
    if PROGRESS_TABLE not in present:
        planned.append(
            (
                f"create table {PROGRESS_TABLE} (how far each follower has applied them)",
                [
                    f"CREATE TABLE {PROGRESS_TABLE} (follower TEXT PRIMARY KEY, "
                    "position INTEGER NOT NULL, seen REAL NOT NULL)"
                ],
                [],
            )
        )
    return planned


def rewriting_sql(backend: str) -> str:
    """A query of the tables whose rows the database may change as they are written, beyond
    what the write sets: a table with a trigger of the user's own that runs for each
    inserted or updated row before it is stored (PostgreSQL, MySQL; on SQLite, any trigger
    of theirs, as one after the write may update the row again), or a column with MySQL's
    ``ON UPDATE CURRENT_TIMESTAMP``. twotier's own triggers only move the version."""
    if backend == "postgresql":
        # tgtype's bits: 1 a row's, 2 before, 4 insert, 16 update.
        return (
            "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE c.relnamespace = CAST(current_schema() AS regnamespace) "
            "AND NOT t.tgisinternal AND t.tgtype & 3 = 3 AND t.tgtype & 20 <> 0 "
            "AND t.tgname NOT LIKE 'twotier%'"
        )
    if backend == "mysql":
        return (
            "SELECT event_object_table FROM information_schema.triggers WHERE trigger_schema "
            "= DATABASE() AND action_timing = 'BEFORE' AND event_manipulation IN ('INSERT', "
            "'UPDATE') AND trigger_name NOT LIKE 'twotier%' UNION SELECT table_name FROM "
            "information_schema.columns WHERE table_schema = DATABASE() "
            "AND extra LIKE '%on update%'"
        )
    return (
        "SELECT DISTINCT tbl_name FROM sqlite_master WHERE type = 'trigger' "
        "AND name NOT LIKE 'twotier%'"
    )
