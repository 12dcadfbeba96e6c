"""Adopting a table that exists: what ``db init`` does over a user's own table.

It adds what twotier needs and the declaration names but the table lacks — the ``version``
column, a declared field's column, a lookup's index — and never drops, renames or rewrites
anything. A declaration that contradicts the table (a text column shorter than its
``max_length``, a number where the declaration says text, a range the column cannot hold, a
nullable field over a NOT NULL column) is refused with one line that names the table, the
column and what to change: serving it would fail on the first row that does not fit.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    inspect,
    literal,
    text,
)
from sqlalchemy.engine.interfaces import ReflectedColumn
from sqlalchemy.types import TypeEngine

from twotier.resources import Resource
from twotier.resources.fields import (
    MISSING,
    BooleanField,
    FieldSpec,
    IntegerField,
    NumberField,
    StringField,
    TimestampField,
)
from twotier.store.sql_schema import VERSION, lookup_index_name

log = logging.getLogger("twotier.schema")


class SchemaMismatch(ValueError):
    """A declaration that contradicts the table it names; the message is one line."""


def adopt(conn: Connection, resource: Resource, table: Table) -> list[str]:
    """Bring an existing ``table`` up to ``resource``'s declaration; what was done, one line
    each. SchemaMismatch if the declaration contradicts the table."""
    inspector = inspect(conn)
    found = {column["name"]: column for column in inspector.get_columns(table.name)}
    where = f"table {table.name} (resources.{resource.name})"
    if resource.key not in found:
        raise SchemaMismatch(
            f"{where} has no column {resource.key!r}, the resource's key: declare the key "
            "the table has (`key = …`), or name another table"
        )
    done: list[str] = []
    for name in resource.columns:
        spec = resource.field(name)
        if name in found:
            _check(where, spec, found[name], conn.dialect.name)
            continue
        done.append(_add_column(conn, table, name, spec, where))
    if VERSION not in found:
        _execute_add(conn, table, VERSION, "BIGINT NOT NULL DEFAULT 1")
        done.append(f"{table.name}: added column {VERSION} (every row at version 1)")
    indexed = {tuple(index["column_names"]) for index in inspector.get_indexes(table.name)}
    for lookup in resource.lookups:
        if (lookup, resource.key) in indexed or (lookup,) in indexed:
            continue
        Index(lookup_index_name(resource, lookup), table.c[lookup], table.c[resource.key]).create(
            conn, checkfirst=True
        )
        done.append(f"{table.name}: added index {lookup_index_name(resource, lookup)}")
    for line in done:
        log.info("schema adopted", extra={"change": line})
    return done


def _add_column(conn: Connection, table: Table, name: str, spec: FieldSpec, where: str) -> str:
    column = table.c[name]
    kind = column.type.compile(dialect=conn.dialect)
    if spec.nullable:
        _execute_add(conn, table, name, f"{kind} NULL")
        return f"{table.name}: added column {name} (NULL in every row)"
    if spec.default is not MISSING:
        value = literal(_stored(spec.default, conn), type_=column.type).compile(
            dialect=conn.dialect, compile_kwargs={"literal_binds": True}
        )
        _execute_add(conn, table, name, f"{kind} NOT NULL DEFAULT {value}")
        return f"{table.name}: added column {name} (its default in every row)"
    empty = conn.execute(text(f"SELECT 1 FROM {_quoted(conn, table.name)} LIMIT 1")).first()
    if empty is not None:
        raise SchemaMismatch(
            f"{where}: field {name!r} is new, required and has no default, and the table "
            "holds rows: declare `default = …` or `nullable = true` for it"
        )
    _execute_add(conn, table, name, f"{kind} NOT NULL")
    return f"{table.name}: added column {name}"


def _execute_add(conn: Connection, table: Table, name: str, definition: str) -> None:
    conn.execute(
        text(
            f"ALTER TABLE {_quoted(conn, table.name)} ADD COLUMN {_quoted(conn, name)} {definition}"
        )
    )


def _quoted(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _stored(value: Any, conn: Connection) -> Any:
    return (
        value.replace(tzinfo=None)
        if conn.dialect.name != "postgresql" and hasattr(value, "tzinfo")
        else value
    )


# What each declared type may be stored in, and how many values an integer column holds.
_FAMILIES: dict[type[FieldSpec], tuple[type[TypeEngine[Any]], ...]] = {
    StringField: (String, Text),
    IntegerField: (Integer,),
    NumberField: (Float, Numeric, Integer),
    BooleanField: (Boolean, Integer),
    TimestampField: (DateTime, Date, String),  # SQLite keeps date-times as text
}


def _check(where: str, spec: FieldSpec, column: ReflectedColumn, dialect: str) -> None:
    found: TypeEngine[Any] = column["type"]
    name = spec.name
    families = _FAMILIES[type(spec)]
    if not isinstance(found, families):
        raise SchemaMismatch(
            f"{where}: column {name!r} is {found}; the declaration says {spec.type_name}: "
            "change the field's type to match the column"
        )
    length = found.length if isinstance(found, String) else None
    if isinstance(spec, StringField) and length and length < spec.max_length:
        raise SchemaMismatch(
            f"{where}: column {name!r} is {found} and the declaration says max_length "
            f"{spec.max_length}: declare max_length = {length} or less"
        )
    if isinstance(spec, IntegerField):
        low, high = spec.bounds
        capacity = _capacity(found, dialect)
        if not (capacity[0] <= low and high <= capacity[1]):
            raise SchemaMismatch(
                f"{where}: column {name!r} is {found}, which holds {capacity[0]} to "
                f"{capacity[1]}; declare minimum and maximum within that"
            )
    if spec.nullable and not column.get("nullable", True):
        raise SchemaMismatch(
            f"{where}: column {name!r} is NOT NULL and the declaration says nullable: "
            "drop `nullable = true`, or make the column nullable"
        )


def _capacity(found: TypeEngine[Any], dialect: str) -> tuple[int, int]:
    """The values an integer column holds (SQLite's INTEGER holds 64 bits)."""
    if dialect == "sqlite":
        return -(2**63), 2**63 - 1
    unsigned = bool(getattr(found, "unsigned", False))
    bits = 16 if isinstance(found, SmallInteger) else 64 if isinstance(found, BigInteger) else 32
    if type(found).__name__.upper() in ("TINYINT",):
        bits = 8
    elif type(found).__name__.upper() in ("MEDIUMINT",):
        bits = 24
    if unsigned:
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
