"""Core constructs compiled into ``Statement``s, and a row's conversions, for one dialect.

On MySQL and PostgreSQL each conversion the dialect would apply is named by one of
``sql_statement``'s functions, so that what is compiled here can be kept and run without
SQLAlchemy; a type whose dialect converts it in a way this module does not name is refused
here, where a test finds it, rather than run wrongly. SQLite keeps its dialect's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, Boolean, ColumnElement, Enum, Float, LargeBinary, Uuid
from sqlalchemy.dialects.mysql import TIME as MYSQL_TIME
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine

from twotier.store import sql_statement as named
from twotier.store.sql_statement import Conversion, Processor, Statement


def compiled(construct: ClauseElement, dialect: Dialect) -> Statement:
    """``construct`` compiled for ``dialect``: its SQL, and its values in order."""
    compiler = construct.compile(dialect=dialect)
    assert isinstance(compiler, SQLCompiler)  # Core statements compile so
    params = tuple(compiler.positiontup or ())
    binds = tuple(
        (index, processor)
        for index, name in enumerate(params)
        if (processor := _bind(compiler.binds[name].type, dialect)) is not None
    )
    return Statement(
        sql=str(compiler),
        params=params,
        # Literals of the construct (``version + 1``) travel as bound values too.
        defaults=dict(compiler.params),
        binds=binds,
        returns_rows=bool(getattr(compiler, "effective_returning", None)),
    )


def row_conversions(
    columns: Sequence[ColumnElement[Any]], dialect: Dialect
) -> tuple[Conversion, ...]:
    """What the driver hands back in another form than each column's type (MySQL's booleans
    as integers, SQLite's datetimes as text), by position, converted as SQLAlchemy would;
    asyncpg decodes every type itself, a UUID as an object where twotier keeps its text."""
    return tuple(
        (index, processor)
        for index, column in enumerate(columns)
        if (processor := _result(column.type, dialect)) is not None
    )


def _bind(kind: TypeEngine[Any], dialect: Dialect) -> Processor | None:
    impl = kind.dialect_impl(dialect)
    processor = impl.bind_processor(dialect)
    if processor is None or dialect.name == "sqlite":
        return processor
    if isinstance(impl, Enum):
        return None  # a label stands for itself (the declaration's values are its labels)
    if isinstance(impl, Boolean):
        return named.bool_as_bool if dialect.supports_native_boolean else named.bool_as_int
    if isinstance(impl, JSON):
        return named.json_text
    if isinstance(impl, LargeBinary):  # asyncpg's DB-API takes bytes as they are
        return named.as_bytes if dialect.name == "mysql" else None
    raise TypeError(f"no named conversion of {impl!r} values for {dialect.name}")


def _result(kind: TypeEngine[Any], dialect: Dialect) -> Processor | None:
    if dialect.name == "postgresql":
        return named.uuid_text if isinstance(kind, Uuid) else None
    impl = kind.dialect_impl(dialect)
    processor = impl.result_processor(dialect, None)
    if processor is None or dialect.name == "sqlite":
        return processor
    if isinstance(impl, Boolean):
        return named.int_as_bool
    if isinstance(impl, Float) and not impl.asdecimal:
        return named.as_float
    if isinstance(impl, MYSQL_TIME):
        return named.time_of_day
    if isinstance(impl, JSON):
        return named.json_value
    raise TypeError(f"no named conversion of {impl!r} rows for {dialect.name}")
