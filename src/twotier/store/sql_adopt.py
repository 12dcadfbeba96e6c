"""What ``db init`` does to a database: planned whole, checked whole, then done.

For every declared table it plans what is missing — the table itself, or, for a table that
exists (adopting it), the ``version`` column, a declared field's column, the index of a
lookup or a filter — and the version triggers that depend on them; it never drops, renames
or rewrites anything.
Every contradiction between a declaration and the table it names is found before anything
is changed, all of them in one run, each on a line that names the table, the column and what
to change:

- the key: a column the table has, which names one row (its primary key, or a unique
  column); an automatic id only over a column the database fills (auto-increment, a
  sequence, an identity), a client-given key never over one (ids given around a sequence
  collide with the database's own later);
- each field: a column that stores the field's values exactly as twotier validates them,
  or the cache would hold a value the database does not (a ``NUMERIC`` rounds a double, a
  ``DATETIME`` without fractions rounds a timestamp, a ``CHAR`` pads text);
- a column twotier would leave empty on insert must take that (nullable, or a default).

Names are matched as the database matches them (``sql_names``). The plan is then made in
one transaction where the database takes DDL in one (SQLite, PostgreSQL: all or nothing);
on MySQL, where each DDL statement commits, nothing depending on a change (a trigger on the
version column) is made before that change is seen in the catalog.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Connection,
    Date,
    DateTime,
    Double,
    Enum,
    Float,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    Time,
    Uuid,
    delete,
    insert,
    inspect,
    literal,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine.interfaces import ReflectedColumn
from sqlalchemy.engine.reflection import Inspector
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.types import BINARY, CHAR, VARBINARY, LargeBinary, TypeEngine

from twotier.errors import SchemaMismatch
from twotier.resources import Resource
from twotier.resources.fields import (
    MISSING,
    BinaryField,
    BooleanField,
    DateField,
    DecimalField,
    FieldSpec,
    IntegerField,
    JsonField,
    LocalDateTimeField,
    NumberField,
    StringField,
    TimeField,
    TimestampField,
    UuidField,
)
from twotier.store.base import SchemaChange
from twotier.store.sql_names import NameRules
from twotier.store.sql_schema import Made, field_index, made, needs_index
from twotier.store.sql_statement import VERSION
from twotier.store.sql_triggers import (
    change_log_sql,
    changes_table_sql,
    pg_function_sql,
    version_trigger_sql,
)

log = logging.getLogger("twotier.schema")

#: The significant digits a double keeps exactly (a decimal on SQLite is one).
SQLITE_DECIMAL_DIGITS = 15
#: A column twotier's versions fit in: microseconds since 1970 need more than 32 bits.
_VERSION_BITS = 63


@dataclass(frozen=True)
class Change:
    """One change the plan makes: what it is, for the operator; the statements that make
    it, exactly as they run (``db init --dry-run`` prints them); what they make, for the
    ledger ``db detach`` reads; and a check to pass just before they run."""

    line: str
    statements: tuple[str, ...]
    made: tuple[Made, ...] = ()
    check: Callable[[Connection], None] | None = None

    @property
    def shown(self) -> SchemaChange:
        return SchemaChange(self.line, self.statements)


@dataclass
class Plan:
    """What ``db init`` would do (``changes``, in order) and why it cannot (``problems``)."""

    changes: list[Change] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def shown(self) -> list[SchemaChange]:
        return [change.shown for change in self.changes]


def plan_schema(conn: Connection, declared: Sequence[tuple[Resource, Table]]) -> Plan:
    """Everything ``declared`` (each resource with its table as twotier would make it) needs
    of the database behind ``conn``, changing nothing."""
    rules = NameRules.of(conn)
    inspector = inspect(conn)
    present = inspector.get_table_names()
    plan = Plan()
    stored: dict[str, str | None] = {}
    for resource, table in declared:
        found = rules.table(table.name, present)
        stored[table.name] = found
        if conn.dialect.name == "sqlite":
            where = f"table {found or table.name} (resources.{resource.name})"
            plan.problems += sqlite_decimal_problems(resource, where)
        if conn.dialect.name == "postgresql":
            plan.problems += _missing_enum_types(conn, resource)
        if found is None:
            plan.problems += [
                f"resources.{resource.name}.fields.{name}: `database_default` leaves it to "
                f"the column's own DEFAULT, and table {table.name} is yet to be made (twotier "
                "writes no such DEFAULT): create the table, or declare a `default`"
                for name in resource.filled_by_database
            ]
            line = f"create table {table.name}"
            other = NameRules(tables_fold=True, columns_fold=True).table(table.name, present)
            if other is not None:  # a name this database takes as another table's
                line += (
                    f" (beside table {other}: this database tells names apart by case; "
                    f'to serve {other}, declare table = "{other}")'
                )
            plan.changes.append(creating(conn, table, line))
        else:
            _plan_adoption(conn, inspector, rules, resource, table, found, plan)
    sqlite = conn.dialect.name == "sqlite"  # no change log of its own: triggers keep one
    if sqlite and declared:
        for line, statements, made in changes_table_sql(conn):
            plan.changes.append(Change(line, tuple(statements), tuple(made)))
    function_planned = False
    for resource, table in declared:
        shown = stored[table.name] or table.name
        planned = version_trigger_sql(conn, rules, table, resource.key_fields, shown)
        if sqlite:
            binary = frozenset(
                name for name in resource.columns if isinstance(resource.field(name), BinaryField)
            )
            planned += change_log_sql(conn, rules, table, resource.columns, shown, binary)
        if planned and conn.dialect.name == "postgresql" and not function_planned:
            planned.insert(0, pg_function_sql())  # what the triggers call, once
            function_planned = True
        for line, statements, made in planned:
            check = _verifier(table, resource, rules)
            plan.changes.append(Change(line, tuple(statements), tuple(made), check))
    return plan


def _missing_enum_types(conn: Connection, resource: Resource) -> list[str]:
    """The PostgreSQL enumeration types the resource's fields name that are not there
    (twotier makes none: they are the schema's own)."""
    problems = []
    for spec in resource.fields:
        if not isinstance(spec, StringField) or spec.enum is None:
            continue
        query = "SELECT count(*) FROM pg_type WHERE typname = :name AND typtype = 'e'"
        if not conn.execute(text(query), {"name": spec.enum}).scalar():
            listed = ", ".join(f"'{value}'" for value in spec.values or ())
            problems.append(
                f"resources.{resource.name}.fields.{spec.name}: there is no enumeration type "
                f"{spec.enum!r}: create it (CREATE TYPE {spec.enum} AS ENUM ({listed})), or "
                "declare the field without `enum` (a CHECK keeps its values)"
            )
    return problems


def make_plan(conn: Connection, plan: Plan) -> None:
    """Make every change of ``plan`` (which has no problems), in order, and record what
    each made in the ledger."""
    for change in plan.changes:
        if change.check is not None:
            change.check(conn)
        run_statements(conn, change.statements)
        record(conn, change.made)
        log.info("schema changed", extra={"change": change.line})


def run_statements(conn: Connection, statements: Sequence[str]) -> None:
    """Run ``statements`` as they are written (a driver that formats statements with
    ``%`` would take a ``%`` in one, a MySQL host pattern, for a parameter)."""
    percent = conn.dialect.paramstyle in ("format", "pyformat")
    for statement in statements:
        conn.exec_driver_sql(statement.replace("%", "%%") if percent else statement)


def record(conn: Connection, things: Sequence[Made], was: str = "") -> None:
    """Write ``things`` into the ledger of what twotier made (each once)."""
    for kind, table, name in things:
        where = (made.c.kind == kind) & (made.c.tbl == table) & (made.c.name == name)
        conn.execute(delete(made).where(where))
        conn.execute(insert(made).values(kind=kind, tbl=table, name=name, was=was))


def creating(conn: Connection, table: Table, line: str, *, own: bool = False) -> Change:
    """The change that creates ``table`` and its indexes (``own``: one of twotier's own
    tables, which ``db detach`` drops by name, so the ledger need not hold it)."""
    dialect = conn.dialect
    statements = [str(CreateTable(table).compile(dialect=dialect)).strip()]
    things: list[Made] = [] if own else [("table", table.name, table.name)]
    for index in sorted(table.indexes, key=lambda index: str(index.name)):
        statements.append(_index_sql(index, conn))
        things.append(("index", table.name, str(index.name)))
    return Change(line, tuple(statements), tuple(things))


def _index_sql(index: Index, conn: Connection) -> str:
    return str(CreateIndex(index).compile(dialect=conn.dialect)).strip()


def _verifier(table: Table, resource: Resource, rules: NameRules) -> Callable[[Connection], None]:
    """A trigger's check: the columns it uses are there (on MySQL, whose DDL commits
    statement by statement, a change before it may not have been made)."""

    def check(conn: Connection) -> None:
        _verify(conn, rules, table, resource)

    return check


def _verify(conn: Connection, rules: NameRules, table: Table, resource: Resource) -> None:
    found = rules.table(table.name, inspect(conn).get_table_names())
    columns = [c["name"] for c in inspect(conn).get_columns(found)] if found else []
    missing = [
        name
        for name in (*resource.key_fields, VERSION)
        if found is None or rules.column(name, columns) is None
    ]
    if missing:
        raise SchemaMismatch(
            [
                f"table {table.name} (resources.{resource.name}) lacks {', '.join(missing)} "
                "after db init's changes: nothing that depends on them was made; run db init "
                "again"
            ]
        )


def _plan_adoption(
    conn: Connection,
    inspector: Inspector,
    rules: NameRules,
    resource: Resource,
    table: Table,
    found: str,
    plan: Plan,
) -> None:
    """Plan what an existing table lacks, and note where it contradicts its declaration."""
    where = f"table {found} (resources.{resource.name})"
    dialect = conn.dialect.name
    reflected = inspector.get_columns(found)
    columns = {column["name"]: column for column in reflected}
    keys = {name: rules.column(name, columns) for name in resource.key_fields}
    missing = [name for name, column in keys.items() if column is None]
    problems = plan.problems
    if missing:
        problems.append(
            f"{where} has no column {', '.join(map(repr, missing))}, of the resource's key: "
            f"declare the key the table has ({_keys_text(inspector, found)}), or name another "
            "table"
        )
    else:
        key_columns = [columns[column] for column in keys.values() if column is not None]
        problems += _key_problems(conn, inspector, rules, resource, found, key_columns, where)
    declared: set[str] = set()
    for name in resource.columns:
        if name in missing:
            continue  # said above
        spec = resource.field(name)
        column = rules.column(name, columns)
        if column is not None:
            declared.add(column)
            reason = _unfit(spec, columns[column], dialect)
            if reason is not None:
                problems.append(f"{where}: column {column!r} {reason}")
            elif spec.database_default and not fills_itself(columns[column], dialect):
                problems.append(
                    f"{where}: column {column!r} has no DEFAULT, and the declaration leaves "
                    "it to one (`database_default`): drop that, or give the column a DEFAULT"
                )
            continue
        if spec.database_default:
            problems.append(
                f"{where}: field {name!r} leaves its value to the column's DEFAULT "
                "(`database_default`), and there is no such column: twotier adds none"
            )
            continue
        _plan_column(conn, table, found, name, spec, where, plan)
    version = rules.column(VERSION, columns)
    if version is None:
        plan.changes.append(
            Change(
                f"{found}: add column {VERSION} BIGINT NOT NULL DEFAULT 1 (every row at version 1)",
                (_add(conn, found, VERSION, "BIGINT NOT NULL DEFAULT 1"),),
                (("column", found, VERSION),),
            )
        )
    else:
        declared.add(version)
        kind = columns[version]["type"]
        if not isinstance(kind, Integer) or capacity(kind, dialect)[1] < 2**_VERSION_BITS - 1:
            problems.append(
                f"{where}: column {version!r} is {kind}; twotier keeps its row versions in a "
                f"column of that name, a 64-bit integer: rename the table's own {version!r}, "
                "or serve another table"
            )
    filled_by = insert_triggers(conn, found)
    for name, reflected_column in columns.items():
        if name not in declared and not fills_itself(reflected_column, dialect) and not filled_by:
            problems.append(
                f"{where}: column {name!r} is NOT NULL, has no default and is not declared, "
                "so every insert through twotier would fail: declare it as a field"
            )
    indexed = [index["column_names"] for index in inspector.get_indexes(found)]
    for name in needs_index(resource):  # the lookups' and the filters'
        if any(_leads_with(rules, names, name) for names in indexed):
            continue
        index = field_index(resource, table, name)
        on = ", ".join(str(column.name) for column in index.columns)
        plan.changes.append(
            Change(
                f"{found}: create index {index.name} on ({on})",
                (_index_sql(index, conn),),
                (("index", found, str(index.name)),),
            )
        )


def _leads_with(rules: NameRules, names: Sequence[str | None], field: str) -> bool:
    """An index whose first column is ``field`` serves its lookups and filters."""
    return bool(names) and names[0] is not None and rules.same_column(names[0], field)


def _plan_column(
    conn: Connection, table: Table, found: str, name: str, spec: FieldSpec, where: str, plan: Plan
) -> None:
    kind = table.c[name].type.compile(dialect=conn.dialect)
    if spec.nullable:
        definition, effect = f"{kind} NULL", "NULL in every row"
    elif spec.default is not MISSING:
        value = literal(_stored(spec.default, conn), type_=table.c[name].type).compile(
            dialect=conn.dialect, compile_kwargs={"literal_binds": True}
        )
        definition, effect = f"{kind} NOT NULL DEFAULT {value}", "its default in every row"
    else:
        quoted = conn.dialect.identifier_preparer.quote(found)
        if conn.execute(text(f"SELECT 1 FROM {quoted} LIMIT 1")).first() is not None:
            plan.problems.append(
                f"{where}: field {name!r} is new, required and has no default, and the table "
                "holds rows: declare `default = …` or `nullable = true` for it"
            )
            return
        definition, effect = f"{kind} NOT NULL", "the table is empty"
    plan.changes.append(
        Change(
            f"{found}: add column {name} {definition} ({effect})",
            (_add(conn, found, name, definition),),
            (("column", found, name),),
        )
    )


def _add(conn: Connection, table: str, name: str, definition: str) -> str:
    quote = conn.dialect.identifier_preparer.quote
    return f"ALTER TABLE {quote(table)} ADD COLUMN {quote(name)} {definition}"


def _stored(value: Any, conn: Connection) -> Any:
    return (
        value.replace(tzinfo=None)
        if conn.dialect.name != "postgresql" and hasattr(value, "tzinfo")
        else value
    )


# -- the key ------------------------------------------------------------------------------


def _key_problems(
    conn: Connection,
    inspector: Inspector,
    rules: NameRules,
    resource: Resource,
    found: str,
    columns: Sequence[ReflectedColumn],
    where: str,
) -> list[str]:
    """Why the key's columns cannot be the resource's key: together they name more than
    one row, or its values come from the database where the declaration gives them (or the
    other way)."""
    names = [column["name"] for column in columns]
    single = len(names) == 1
    shown = repr(names[0]) if single else "(" + ", ".join(names) + ")"
    primary, unique = _table_keys(inspector, found)
    problems: list[str] = []

    def same(table_key: Sequence[str]) -> bool:
        return len(table_key) == len(names) and all(
            any(rules.same_column(theirs, name) for theirs in table_key) for name in names
        )

    if same(primary):
        pass
    elif any(same(columns_of) for columns_of in unique):
        nullable = [column["name"] for column in columns if column.get("nullable", True)]
        if nullable:
            problems.append(
                f"{where}: key {shown} is unique but {', '.join(map(repr, nullable))} nullable, "
                "and a row without a value there could not be named: make it NOT NULL, or "
                "declare another key"
            )
    else:
        problems.append(
            f"{where}: key {shown} is neither the primary key nor "
            f"{'a unique column' if single else 'unique'}, so it may name many rows: the "
            f"table's keys are {_keys_text(inspector, found)}; declare one of those"
        )
    if len(columns) > 1:
        return problems
    column, name = columns[0], names[0]
    filled = generated(conn, found, column)
    if resource.auto_key and filled is None:
        problems.append(
            f"{where}: column {name!r} gets no value from the database (no auto-increment, "
            f'sequence or identity): declare it as a client-given key, key = "{name}", '
            "with its field"
        )
    elif not resource.auto_key and filled is not None and filled != "rowid":
        problems.append(
            f"{where}: column {name!r} takes its values from the database ({filled}): "
            f'declare it as the automatic id, id = "{name}" (and not as a field): ids given '
            "by clients would go around its counter (on PostgreSQL, the next id it hands out "
            "then collides with one of theirs)"
        )
    return problems


def _table_keys(inspector: Inspector, found: str) -> tuple[list[str], list[list[str]]]:
    """The table's primary key's columns, and each unique constraint's or index's."""
    primary = list(inspector.get_pk_constraint(found).get("constrained_columns") or [])
    unique = [list(u["column_names"]) for u in inspector.get_unique_constraints(found)]
    unique += [
        [str(c) for c in i["column_names"]] for i in inspector.get_indexes(found) if i.get("unique")
    ]
    return primary, unique


def _keys_text(inspector: Inspector, found: str) -> str:
    """The table's own keys, as a declaration would name them."""
    primary, unique = _table_keys(inspector, found)
    keys = [primary, *unique] if primary else unique
    shown = list(dict.fromkeys("(" + ", ".join(k) + ")" if len(k) > 1 else k[0] for k in keys))
    return " or ".join(shown) if shown else "none: no primary key, no unique column"


_AUTOINCREMENT = re.compile(r"\bAUTOINCREMENT\b", re.IGNORECASE)


def generated(conn: Connection, table: str, column: ReflectedColumn) -> str | None:
    """How the database fills the column when an insert leaves it out, if it does: its
    sequence (``"AUTO_INCREMENT"``, ``"a sequence"``, ``"an identity"``), or ``"rowid"``
    (SQLite's ``INTEGER PRIMARY KEY`` without AUTOINCREMENT: the highest id plus one,
    which ids given by clients do not disturb). None if it does not."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        found = conn.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
            {"name": table},
        ).scalar()
        info = conn.exec_driver_sql(
            f"PRAGMA table_info({conn.dialect.identifier_preparer.quote(table)})"
        ).all()
        pk = [row for row in info if row[5]]
        definition = str(found or "")
        if (
            len(pk) == 1
            and pk[0][1].lower() == column["name"].lower()
            and str(pk[0][2]).upper() == "INTEGER"
            and "WITHOUT ROWID" not in definition.upper()
        ):
            return "AUTOINCREMENT" if _AUTOINCREMENT.search(definition) else "rowid"
        return None
    if not column.get("autoincrement"):
        return None
    if dialect == "postgresql":
        return "an identity" if column.get("identity") else "a sequence"
    return "AUTO_INCREMENT"


def insert_triggers(conn: Connection, table: str) -> list[str]:
    """The table's own triggers that run before each row is inserted (not twotier's): one
    may fill a NOT NULL column an insert leaves out (PostgreSQL's full-text vectors, as
    Sakila's film does). SQLite's cannot change the row."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        quoted = conn.dialect.identifier_preparer.quote(table)
        # tgtype's bits: 1 a row's, 2 before, 4 on insert.
        query = (
            "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(:table) "
            "AND NOT tgisinternal AND tgtype & 7 = 7 ORDER BY tgname"
        )
        names = conn.execute(text(query), {"table": quoted}).scalars().all()
    elif dialect == "mysql":
        query = (
            "SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = "
            "DATABASE() AND event_object_table = :table AND action_timing = 'BEFORE' "
            "AND event_manipulation = 'INSERT' ORDER BY trigger_name"
        )
        names = conn.execute(text(query), {"table": table}).scalars().all()
    else:
        return []
    return [str(name) for name in names if not str(name).lower().startswith("twotier_")]


def fills_itself(column: ReflectedColumn, dialect: str) -> bool:
    """Can an insert leave the column out?"""
    return bool(
        column.get("nullable", True)
        or column.get("default") is not None
        or column.get("autoincrement") is True
        or column.get("identity")
        or column.get("computed")
        or (dialect == "sqlite" and column.get("primary_key"))
    )


# -- the columns --------------------------------------------------------------------------


def column_type(column: ReflectedColumn) -> TypeEngine[Any]:
    """The type a column's values have: a PostgreSQL domain's, the type it is made from
    (Sakila's ``year``, an integer with a CHECK, which then refuses what it refuses)."""
    found: TypeEngine[Any] = column["type"]
    data_type = getattr(found, "data_type", None)
    return data_type if type(found).__name__ == "DOMAIN" and data_type is not None else found


def _unfit(spec: FieldSpec, column: ReflectedColumn, dialect: str) -> str | None:
    """Why the column cannot hold the field's values exactly as twotier validates them (a
    sentence after "column 'x' "), or None if it can."""
    found = column_type(column)
    if column.get("computed"):
        return "is computed by the database and cannot be written: leave the field out"
    reason = type_unfit(spec, found, dialect)
    if reason is not None:
        # An enumeration type is known by its name (its SQL would read VARCHAR).
        shown = found.name if isinstance(found, Enum) and found.name else found
        return f"is {shown}{', ' if reason.startswith('which') else '; '}{reason}"
    if spec.nullable and not column.get("nullable", True):
        return (
            "is NOT NULL and the declaration says nullable: drop `nullable = true`, or make "
            "the column nullable"
        )
    return None


def _another_type(spec: FieldSpec) -> str:
    return f"the declaration says {spec.type_name}: change the field's type to match the column"


def type_unfit(spec: FieldSpec, found: TypeEngine[Any], dialect: str) -> str | None:
    other = _another_type(spec)
    if isinstance(spec, StringField):
        if type(found).__name__ == "SET":
            return "it holds sets of its listed values, which twotier cannot serve yet"
        if isinstance(found, Enum):
            return _enum_unfit(spec, found, dialect)
        if not isinstance(found, String):
            return other
        if dialect != "sqlite" and isinstance(found, CHAR) != spec.fixed:
            if spec.fixed:
                return "the declaration says fixed = true, a CHAR: drop `fixed`"
            return (
                "a CHAR pads its text with spaces: declare the field `fixed = true`, so that "
                "twotier reads it without them (and refuses text that ends in a space)"
            )
        if found.length and found.length < spec.max_length:
            return (
                f"the declaration says max_length {spec.max_length}: declare "
                f"max_length = {found.length} or less"
            )
        return None
    if isinstance(spec, IntegerField):
        if isinstance(found, Boolean) or not isinstance(found, Integer | mysql.YEAR):
            return other
        low, high = spec.bounds
        holds = capacity(found, dialect)
        if not (holds[0] <= low and high <= holds[1]):
            return (
                f"which holds {holds[0]} to {holds[1]}; declare minimum and maximum "
                "within that" + (" (for an automatic id: id = { maximum = … })" if low == 1 else "")
            )
        return None
    if isinstance(spec, NumberField):
        exact = isinstance(found, Float) and not getattr(found, "scale", None)
        if exact and (dialect == "sqlite" or isinstance(found, Double)):
            return None  # a double, as the field's values are (SQLite's REAL always is)
        if isinstance(found, Float):
            return (
                "the declaration says number, a 64-bit double, and this column keeps fewer "
                "digits, so a value read back would differ from the one written"
            )
        if isinstance(found, Numeric):
            shape = (
                f"precision = {found.precision}, scale = {found.scale}"
                if found.precision is not None and found.scale is not None
                else "precision = …, scale = …"
            )
            return (
                "an exact decimal, and a number is a binary double: the column would round "
                "what the cache holds (0.125 stored as 0.13): declare "
                f'{{ type = "decimal", {shape} }}'
            )
        if isinstance(found, Integer):
            return "it holds whole numbers only: declare an integer field"
        return other
    if isinstance(spec, DecimalField):
        return _decimal_unfit(spec, found, dialect) if not isinstance(found, Float) else other
    if isinstance(spec, BooleanField):
        if isinstance(found, Boolean) or (dialect != "postgresql" and isinstance(found, Integer)):
            return None
        return other
    if isinstance(spec, BinaryField):
        return _binary_unfit(spec, found)
    if isinstance(spec, JsonField):
        if isinstance(found, JSON) or (dialect != "postgresql" and isinstance(found, Text)):
            return None  # MariaDB's JSON is a LONGTEXT; SQLite keeps it as text
        return other
    if isinstance(spec, UuidField):
        if isinstance(found, Uuid):
            return None
        if isinstance(found, String) and not isinstance(found, CHAR) and (found.length or 36) >= 36:
            return None  # its text, as twotier writes it (lower case)
        return other
    if isinstance(spec, DateField):
        if isinstance(found, Date) or (dialect == "sqlite" and isinstance(found, String)):
            return None  # SQLite keeps dates as text
        return other
    if isinstance(spec, TimeField):
        return _time_unfit(spec, found, dialect)
    assert isinstance(spec, TimestampField | LocalDateTimeField)
    if isinstance(found, Date) or not isinstance(found, DateTime | String):
        return other
    if isinstance(found, String):
        # SQLite keeps date-times as text; elsewhere text is not a date-time.
        return None if dialect == "sqlite" else other
    zoned = isinstance(spec, TimestampField)
    if dialect == "postgresql" and found.timezone != zoned:
        return (
            "a date-time without a time zone, and a timestamp is an instant with its offset: "
            'declare { type = "local_datetime" }, which keeps it as written'
            if zoned
            else "an instant with its time zone: declare a timestamp"
        )
    if not zoned and keeps_instants(found, dialect):
        return "MySQL's TIMESTAMP holds instants: declare a timestamp"
    digits = fraction_digits(found, dialect)
    if digits < spec.precision:
        return (
            f"which keeps {digits} fractional digits of a second and would round what the "
            f"cache holds: declare precision = {digits}"
        )
    return None


def _enum_unfit(spec: StringField, found: Enum, dialect: str) -> str | None:
    listed = ", ".join(f'"{value}"' for value in found.enums)
    if dialect == "postgresql" and spec.enum != found.name:
        return f'a PostgreSQL enumeration type: declare enum = "{found.name}", values = [{listed}]'
    if spec.values is None:
        return f"it holds only its listed values: declare values = [{listed}]"
    others = [value for value in spec.values if value not in found.enums]
    if others:
        return f"it holds only [{listed}], not {', '.join(others)}: declare values among them"
    return None


#: The column types that hold bytes (MySQL's BLOBs by size among them).
BYTES = (LargeBinary, BINARY, VARBINARY, mysql.TINYBLOB, mysql.MEDIUMBLOB, mysql.LONGBLOB)

#: What MySQL's YEAR holds (besides 0000, which twotier never writes).
YEARS = (1901, 2155)


def _binary_unfit(spec: BinaryField, found: TypeEngine[Any]) -> str | None:
    if not isinstance(found, BYTES):
        return _another_type(spec)
    if type(found).__name__ == "BINARY":
        return (
            "a BINARY pads its values with zero bytes, so bytes read back could differ from "
            "bytes written: twotier serves VARBINARY, BLOB and BYTEA"
        )
    held = binary_capacity(found)
    if held is not None and held < spec.max_length:
        return f"which holds {held} bytes: declare max_length = {held} or less"
    return None


def binary_capacity(found: TypeEngine[Any]) -> int | None:
    """The bytes a binary column holds (None: as many as twotier would send)."""
    sizes = {"TINYBLOB": 255, "BLOB": 65_535, "MEDIUMBLOB": 2**24 - 1, "LONGBLOB": 2**32 - 1}
    named = sizes.get(type(found).__name__)
    length = getattr(found, "length", None)
    if named is not None and not length:
        return named
    return int(length) if length else None


def _decimal_unfit(spec: DecimalField, found: TypeEngine[Any], dialect: str) -> str | None:
    if not isinstance(found, Numeric):
        return _another_type(spec)
    if dialect == "sqlite":
        return None  # a NUMERIC there is a double (or an integer): its precision, see above
    precision, scale = found.precision, found.scale
    if precision is None or scale is None:
        return (
            "which keeps any number of digits after the point, and a decimal field keeps "
            "a fixed number: twotier serves NUMERIC(precision, scale) columns"
        )
    if scale != spec.scale:
        return f"which keeps {scale} digits after the point: declare scale = {scale}"
    if precision < spec.precision:
        return f"which keeps {precision} digits: declare precision = {precision} or less"
    return None


def sqlite_decimal_problems(resource: Resource, where: str) -> list[str]:
    """SQLite keeps a NUMERIC as a binary double: exact to 15 significant digits."""
    return [
        f"{where}: field {spec.name!r} has precision {spec.precision}, and SQLite keeps a "
        f"decimal as a binary double, exact to {SQLITE_DECIMAL_DIGITS} digits: declare "
        f"precision = {SQLITE_DECIMAL_DIGITS} or less"
        for spec in resource.fields
        if isinstance(spec, DecimalField) and spec.precision > SQLITE_DECIMAL_DIGITS
    ]


def keeps_instants(found: DateTime, dialect: str) -> bool:
    """Does the date-time column keep instants (PostgreSQL's WITH TIME ZONE, MySQL's
    TIMESTAMP), or wall-clock readings (WITHOUT TIME ZONE, DATETIME)?"""
    if dialect == "postgresql":
        return bool(found.timezone)
    return type(found).__name__ == "TIMESTAMP"


def _time_unfit(spec: TimeField, found: TypeEngine[Any], dialect: str) -> str | None:
    if dialect == "sqlite" and isinstance(found, Time | String):
        return None  # SQLite keeps times as text
    if not isinstance(found, Time):
        return _another_type(spec)
    if getattr(found, "timezone", False):
        return "a time with a time zone, and a time field keeps none: twotier serves TIME"
    kept = fraction_digits(found, dialect)
    if kept < spec.precision:
        return (
            f"which keeps {kept} fractional digits of a second: declare precision = {kept} or less"
        )
    return None


def fraction_digits(found: TypeEngine[Any], dialect: str) -> int:
    """How many fractional digits of a second a date-time column keeps."""
    if dialect == "sqlite":
        return 6
    if dialect == "postgresql":
        precision = getattr(found, "precision", None)
        return 6 if precision is None else int(precision)
    return int(getattr(found, "fsp", None) or 0)


def capacity(found: TypeEngine[Any], dialect: str) -> tuple[int, int]:
    """The values an integer column holds (SQLite's INTEGER holds 64 bits; MySQL's YEAR,
    the years 1901 to 2155)."""
    if dialect == "sqlite":
        return -(2**63), 2**63 - 1
    if isinstance(found, mysql.YEAR):
        return YEARS
    unsigned = bool(getattr(found, "unsigned", False))
    bits = 16 if isinstance(found, SmallInteger) else 64 if isinstance(found, BigInteger) else 32
    if type(found).__name__.upper() in ("TINYINT",):
        bits = 8
    elif type(found).__name__.upper() in ("MEDIUMINT",):
        bits = 24
    if unsigned:
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
