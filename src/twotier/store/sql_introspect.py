"""What ``db introspect`` reads of a SQL database: each table as a declaration describes it.

A table is served when it has a primary key: of one column, an automatic id where the
database fills that column (auto-increment, a sequence, an identity, SQLite's rowid), else a
client-given key; of several columns (a join table's), a composite key the client gives.
Each column becomes the field that holds its values exactly — its type, its length, the
range of its integers, the fractional digits of its date-times, whether it takes null —
judged by the same test ``db init`` applies when it adopts a table
(``sql_adopt.type_unfit``), so what is written here is adopted unchanged. A column no field
holds exactly is left out when an insert may leave it empty (it takes null or has a
default); otherwise the table is. Each column that leads an index (a foreign key's, a
unique one) becomes a lookup. Nothing is changed in the database.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    Date,
    DateTime,
    Enum,
    Float,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Time,
    Uuid,
    inspect,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine.interfaces import ReflectedColumn
from sqlalchemy.engine.reflection import Inspector
from sqlalchemy.types import CHAR

from twotier.errors import StoreRefused
from twotier.resources.fields import (
    DECIMAL_DIGITS,
    INT64,
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
from twotier.resources.introspected import Introspected
from twotier.store.sql_adopt import (
    BYTES,
    SQLITE_DECIMAL_DIGITS,
    binary_capacity,
    capacity,
    column_type,
    fills_itself,
    fraction_digits,
    generated,
    insert_triggers,
    keeps_instants,
    type_unfit,
)
from twotier.store.sql_names import NameRules
from twotier.store.sql_statement import VERSION
from twotier.store.sql_triggers import OWN_TABLES, version_trigger_sql

#: The longest text a string field holds (a column without a length: TEXT).
_TEXT_MAX = 1_000_000


def introspect(conn: Connection, tables: Sequence[str] | None) -> list[Introspected]:
    """Every table of the database (or those named, as the database matches names), in
    its catalogue's order."""
    rules = NameRules.of(conn)
    inspector = inspect(conn)
    present = [name for name in inspector.get_table_names() if name not in OWN_TABLES]
    if tables is None:
        chosen = present
    else:
        chosen = []
        for name in tables:
            found = rules.table(name, present)
            if found is None:
                raise StoreRefused(f"no table {name!r} here (tables: {', '.join(present)})")
            chosen.append(found)
    return [_table(conn, rules, inspector, name) for name in chosen]


def _table(conn: Connection, rules: NameRules, inspector: Inspector, name: str) -> Introspected:
    dialect = conn.dialect.name
    columns = inspector.get_columns(name)
    primary = list(inspector.get_pk_constraint(name).get("constrained_columns") or [])
    if not primary:
        return Introspected(name, None, "no primary key, so a row cannot be named")
    composite = len(primary) > 1
    by_name = {column["name"]: column for column in columns}
    settings: dict[str, Any] = {"table": name}
    ours = _version_is_ours(conn, rules, name, primary, by_name)
    if ours is False:
        return Introspected(
            name,
            None,
            f"a column named {VERSION!r} of its own: twotier keeps each row's version in "
            "one by that name",
        )
    fields: dict[str, dict[str, Any]] = {}
    specs: dict[str, FieldSpec] = {}
    left_out: list[str] = []
    for column in columns:
        column_name = column["name"]
        if ours and column_name.lower() == VERSION:
            continue
        is_key = column_name in primary
        if is_key and generated(conn, name, column) is not None:
            if composite:
                return Introspected(
                    name,
                    None,
                    f"its key's column {column_name!r} is filled by the database, and a key "
                    "of several columns is given by clients whole",
                )
            auto = _auto_id(column, dialect)
            if isinstance(auto, str):
                return Introspected(name, None, auto)
            settings["id"] = auto
            continue
        spec = _field(column, dialect)
        if isinstance(spec, str):
            if is_key:
                return Introspected(name, None, f"its key {column_name!r} {spec}")
            if not fills_itself(column, dialect):
                filled_by = insert_triggers(conn, name)
                if not filled_by:
                    return Introspected(
                        name,
                        None,
                        f"column {column_name!r} {spec}, and an insert cannot leave it out",
                    )
                spec += (
                    f" (NOT NULL without a default: the table's trigger "
                    f"{', '.join(filled_by)} may fill it on insert; if not, the insert is "
                    "refused)"
                )
            left_out.append(f"column {column_name!r} {spec}")
            continue
        if is_key:
            settings["key"] = primary if composite else column_name
        else:
            spec = _with_column_default(spec, column)
        specs[column_name] = spec
        fields[column_name] = _declared(spec)
    if not fields:
        return Introspected(name, None, "no column besides its key that twotier can serve")
    lookups = _lookups(inspector, name, primary, specs)
    if lookups:
        settings["lookups"] = lookups
    settings["fields"] = fields
    references = tuple(
        (str(foreign["constrained_columns"][0]), foreign["referred_table"],
         str(foreign["referred_columns"][0]))
        for foreign in inspector.get_foreign_keys(name)
        if len(foreign["constrained_columns"]) == 1
    )  # fmt: skip
    return Introspected(name, settings, None, tuple(left_out), references)


def _version_is_ours(
    conn: Connection,
    rules: NameRules,
    table: str,
    keys: Sequence[str],
    columns: dict[str, ReflectedColumn],
) -> bool | None:
    """Whether the table's ``version`` column is twotier's (its triggers are there): None
    if it has none."""
    if not any(name.lower() == VERSION for name in columns):
        return None
    shape = Table(table, MetaData())
    return not version_trigger_sql(conn, rules, shape, keys, table)


def _auto_id(column: ReflectedColumn, dialect: str) -> dict[str, Any] | str:
    """The ``id`` setting of a column the database fills, or why it cannot be one."""
    found = column["type"]
    if not isinstance(found, Integer) or isinstance(found, Boolean):
        return f"its key {column['name']!r} is filled by the database but is not an integer"
    high = min(capacity(found, dialect)[1], INT64[1])
    return {"name": column["name"], "maximum": high}


def _field(column: ReflectedColumn, dialect: str) -> FieldSpec | str:
    """The field that holds the column's values exactly, or why none does (a phrase after
    the column's name)."""
    found = column_type(column)
    name = column["name"]
    nullable = bool(column.get("nullable", True))
    spec: FieldSpec
    if column.get("computed"):
        return "is computed by the database"
    if isinstance(found, Boolean):
        spec = BooleanField(name, nullable=nullable)
    elif isinstance(found, Integer | mysql.YEAR):
        low, high = capacity(found, dialect)
        spec = IntegerField(
            name, nullable=nullable, minimum=max(low, INT64[0]), maximum=min(high, INT64[1])
        )
    elif isinstance(found, Float):
        spec = NumberField(name, nullable=nullable)
    elif isinstance(found, Numeric):
        precision, scale = found.precision, found.scale
        if dialect == "sqlite" and precision is None:
            precision, scale = SQLITE_DECIMAL_DIGITS, scale or 0
        if precision is None or scale is None:
            precision, scale = DECIMAL_DIGITS, 0  # type_unfit says why it cannot be served
        if dialect == "sqlite" and precision > SQLITE_DECIMAL_DIGITS:
            return (
                f"is {found}, and SQLite keeps a decimal as a binary double, exact to "
                f"{SQLITE_DECIMAL_DIGITS} digits"
            )
        spec = DecimalField(name, nullable=nullable, precision=precision, scale=scale)
    elif isinstance(found, DateTime):
        # An instant where the column keeps one (PostgreSQL's WITH TIME ZONE, MySQL's
        # TIMESTAMP); else a wall-clock reading, answered as stored.
        digits = min(fraction_digits(found, dialect), 6)
        kind = TimestampField if keeps_instants(found, dialect) else LocalDateTimeField
        spec = kind(name, nullable=nullable, precision=digits)
    elif isinstance(found, Date):
        spec = DateField(name, nullable=nullable)
    elif isinstance(found, Time) and not getattr(found, "timezone", False):
        spec = TimeField(name, nullable=nullable, precision=min(fraction_digits(found, dialect), 6))
    elif isinstance(found, Uuid):
        spec = UuidField(name, nullable=nullable)
    elif isinstance(found, JSON):
        spec = JsonField(name, nullable=nullable)
    elif isinstance(found, BYTES):
        held = binary_capacity(found)
        spec = BinaryField(name, nullable=nullable, max_length=min(held or 2**32 - 1, 2**32 - 1))
    elif isinstance(found, Enum) and found.enums:
        values = tuple(found.enums)
        width = max(len(value) for value in values)
        enum = found.name if dialect == "postgresql" else None  # MySQL's ENUM has no name
        spec = StringField(name, nullable=nullable, max_length=width, values=values, enum=enum)
    elif isinstance(found, String):
        length = found.length or _TEXT_MAX
        fixed = isinstance(found, CHAR) and dialect != "sqlite"  # SQLite pads nothing
        spec = StringField(name, nullable=nullable, max_length=min(length, _TEXT_MAX), fixed=fixed)
    else:
        return f"is {found}, which twotier cannot serve yet"
    why = type_unfit(spec, found, dialect)
    if why is not None:
        return f"is {found}: {why}"
    return spec


#: A column default that is a plain value, as catalogues spell one: a quoted text (its
#: quotes doubled inside; PostgreSQL adds a cast), a number, or true/false.
_QUOTED = re.compile(r"'((?:[^']|'')*)'(?:::[\w\s\"]+)?")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def _with_column_default(spec: FieldSpec, column: ReflectedColumn) -> FieldSpec:
    """``spec`` with the column's default: its value where it is a plain one the field
    takes (so a new row that leaves the field out gets from twotier what the database would
    give); else (``now()``, ``CURRENT_TIMESTAMP``, a sequence) left to the database
    (``database_default``), so a new row may leave it out and the database fills it."""
    text = column.get("default")
    if text is None:
        return spec
    value = _plain_default(spec, str(text).strip())
    if value is MISSING:
        return dataclasses.replace(spec, database_default=True)
    return dataclasses.replace(spec, default=value)


def _plain_default(spec: FieldSpec, text: str) -> Any:
    """The value a column's default text is, as the field takes it; MISSING if it is an
    expression, or a value the field would not take as it is."""
    while text.startswith("(") and text.endswith(")"):  # SQLite keeps its parentheses
        text = text[1:-1].strip()
    quoted = _QUOTED.fullmatch(text)
    value: Any
    if quoted is not None:
        value = quoted.group(1).replace("''", "'")
    elif _NUMBER.fullmatch(text):
        value = text
    elif text.lower() in ("true", "false"):
        value = text.lower() == "true"
    else:
        return MISSING
    if isinstance(spec, IntegerField | NumberField | BooleanField) and isinstance(value, str):
        if not _NUMBER.fullmatch(value):
            return MISSING
        number = float(value) if "." in value else int(value)
        value = bool(number) if isinstance(spec, BooleanField) else number
    if isinstance(spec, TimestampField | JsonField | BinaryField):
        return MISSING  # a zone-less text names no instant; a document or bytes is no text
    try:
        return TypeAdapter(spec.value_type()).validate_python(value)
    except ValidationError:
        return MISSING


def _declared(spec: FieldSpec) -> dict[str, Any]:
    """A field's settings as a declaration writes them."""
    declared: dict[str, Any] = {"type": spec.type_name}
    if isinstance(spec, StringField) and spec.values is not None:
        declared["values"] = list(spec.values)
        if spec.enum is not None:
            declared["enum"] = spec.enum
    elif isinstance(spec, StringField):
        declared["max_length"] = spec.max_length
        if spec.fixed:
            declared["fixed"] = True
    elif isinstance(spec, IntegerField):
        declared["minimum"], declared["maximum"] = spec.minimum, spec.maximum
    elif isinstance(spec, DecimalField):
        declared["precision"], declared["scale"] = spec.precision, spec.scale
    elif isinstance(spec, BinaryField):
        declared["max_length"] = spec.max_length
    elif isinstance(spec, TimestampField | LocalDateTimeField | TimeField) and spec.precision != 6:
        declared["precision"] = spec.precision
    if spec.nullable:
        declared["nullable"] = True
    if spec.default is not MISSING:
        default = spec.default
        declared["default"] = str(default) if isinstance(default, Decimal) else default
    if spec.database_default:
        declared["database_default"] = True
    return declared


def _lookups(
    inspector: Inspector, table: str, primary: Sequence[str], fields: dict[str, FieldSpec]
) -> list[str]:
    """The fields that lead an index of the table, and those that hold a foreign key of one
    column (the rows that point at one row: ``db init`` indexes them where no index does);
    a composite key's parts among them (a join table's rows of one side), never a key of
    one field (read directly)."""
    leading = {
        str(index["column_names"][0])
        for index in inspector.get_indexes(table)
        if index["column_names"] and index["column_names"][0] is not None
    }
    for unique in inspector.get_unique_constraints(table):
        if unique["column_names"]:
            leading.add(unique["column_names"][0])
    for foreign in inspector.get_foreign_keys(table):
        if len(foreign["constrained_columns"]) == 1:
            leading.add(foreign["constrained_columns"][0])
    indexable = {name for name, spec in fields.items() if spec.indexable}
    if len(primary) > 1:
        leading.add(primary[0])  # the primary key's own index leads with it
    whole = primary[0] if len(primary) == 1 else None
    return [name for name in fields if name in leading and name != whole and name in indexable]
