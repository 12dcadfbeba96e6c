"""Statements as data (``sql_statement``): every conversion a MySQL or PostgreSQL statement
names does what the dialect's own processor does, for every declared type; a statement kept
and read back is the same statement."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import MetaData, bindparam, insert, select, update
from sqlalchemy.dialects.mysql import asyncmy
from sqlalchemy.dialects.postgresql import asyncpg

from twotier.resources import load_resources
from twotier.store.sql import _FIRST
from twotier.store.sql_compile import compiled, row_conversions
from twotier.store.sql_schema import book_query, fact_query, resource_table
from twotier.store.sql_statement import NAMED, Statement

EVERY_TYPE = """
[resources.things]
table = "things"
key = "id"
[resources.things.fields]
id = { type = "integer" }
small = { type = "integer", minimum = 0, maximum = 10 }
counter = { type = "integer", minimum = 0, maximum = 4294967295 }
big = { type = "integer", minimum = -9007199254740991 }
name = { type = "string", max_length = 20 }
code = { type = "string", max_length = 3, fixed = true }
story = { type = "string", max_length = 100000, nullable = true }
grade = { type = "string", values = ["G", "PG"] }
rating = { type = "string", values = ["G", "PG"], enum = "rating" }
ratio = { type = "number" }
price = { type = "decimal", precision = 10, scale = 2 }
token = { type = "uuid" }
doc = { type = "json", nullable = true }
blob_ = { type = "binary", max_length = 300, nullable = true }
flag_ = { type = "boolean" }
at = { type = "timestamp" }
at3 = { type = "timestamp", precision = 3 }
wall = { type = "local_datetime" }
on_day = { type = "date" }
starts = { type = "time" }
"""

#: Values of each kind, as a client gives them (binds) and as a driver hands them back.
BOUND: list[Any] = [
    None, True, False, 0, 1, 7, -3, 2.5, "text", "", {"a": [1, 2.5, None]}, [], "é ✓",
    Decimal("12.30"), uuid.UUID(int=7), datetime.datetime(2026, 12, 7, 1, 2, 3, 4),
    datetime.date(2026, 12, 7), datetime.time(1, 2, 3, 4), b"\x00\xff",
]  # fmt: skip
RETURNED: list[Any] = [
    None, 0, 1, 2, 2.5, Decimal("2.5"), '{"a": [1, 2.5]}', b'{"b": null}', "[]",
    datetime.timedelta(hours=23, minutes=59, seconds=59, microseconds=999_999),
    datetime.timedelta(0), uuid.UUID(int=7),
]  # fmt: skip

#: Each dialect as the store makes it: with its DB-API, whose ``Binary`` converts bytes.
DIALECTS = {
    name: kind(dbapi=kind.import_dbapi())
    for name, kind in (("mysql", asyncmy.dialect), ("postgresql", asyncpg.dialect))
}


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path: Path = tmp_path_factory.mktemp("declared") / "resources.toml"
    path.write_text(EVERY_TYPE)
    [resource] = load_resources(path)
    return resource_table(resource, MetaData())


def _same(ours: Any, theirs: Any, value: Any) -> None:
    """``ours(value)`` is what ``theirs(value)`` is, or fails as it does."""
    try:
        expected = theirs(value)
    except Exception as error:
        with pytest.raises(type(error)):
            ours(value)
        return
    assert ours(value) == expected
    assert type(ours(value)) is type(expected)


@pytest.mark.parametrize("backend", DIALECTS)
def test_every_bind_conversion_is_named_and_does_what_the_dialect_does(
    table: Any, backend: str
) -> None:
    dialect = DIALECTS[backend]
    written = [column.name for column in table.c]
    for construct in (insert(table), update(table)):  # every column, a value each
        statement = compiled(construct, dialect)
        assert statement.kept() is not None  # every conversion has a name
        for index, ours in statement.binds:
            name = statement.params[index]
            kind = table.c[name].type.dialect_impl(dialect)
            theirs = kind.bind_processor(dialect)
            assert theirs is not None
            for value in BOUND:
                if value is not None:  # a statement's args leave None as it is
                    _same(ours, theirs, value)
        named = {statement.params[index] for index, _ in statement.binds}
        expected = {
            name
            for name in written
            if table.c[name].type.dialect_impl(dialect).bind_processor(dialect) is not None
            and name != "rating"  # a label stands for itself
            and not (name == "blob_" and backend == "postgresql")  # asyncpg takes bytes
        }
        assert named == expected


@pytest.mark.parametrize("backend", DIALECTS)
def test_every_row_conversion_is_named_and_does_what_the_dialect_does(
    table: Any, backend: str
) -> None:
    dialect = DIALECTS[backend]
    columns = list(table.c)
    conversions = row_conversions(columns, dialect)
    for index, ours in conversions:
        assert NAMED[ours.__name__] is ours
        if backend == "postgresql":  # asyncpg decodes the rest itself
            assert ours.__name__ == "uuid_text"
            continue
        theirs = columns[index].type.dialect_impl(dialect).result_processor(dialect, None)
        for value in RETURNED:
            _same(ours, theirs, value)
    if backend == "mysql":
        converted = {columns[index].name for index, _ in conversions}
        assert converted == {"ratio", "doc", "flag_", "starts"}


@pytest.mark.parametrize("backend", DIALECTS)
def test_a_kept_statement_is_the_statement(table: Any, backend: str) -> None:
    dialect = DIALECTS[backend]
    statement = compiled(
        update(table)
        .where(table.c.id == 1)
        .values(flag_=bindparam("flag_"), doc=bindparam("doc"), version=table.c.version + 1),
        dialect,
    )
    kept = statement.kept()
    assert kept is not None
    again = Statement.from_kept(orjson.loads(orjson.dumps(kept)))
    assert again == statement
    values = {"flag_": False, "doc": {"b": [1]}}
    assert again.args(values | {"id_1": 5}) == statement.args(values | {"id_1": 5})
    reading = compiled(select(*table.c).where(table.c.id == 1), dialect)
    assert Statement.from_kept(orjson.loads(orjson.dumps(reading.kept()))) == reading


@pytest.mark.parametrize("backend", DIALECTS)
def test_the_statements_read_before_the_book_are_sqlalchemys(backend: str) -> None:
    """The store reads its facts and its book with statements written out (``_FIRST``),
    so that reading them needs no SQLAlchemy: they are what SQLAlchemy compiles."""
    dialect = DIALECTS[backend]
    for kind, query in (("fact", fact_query()), ("book", book_query())):
        sql, param = _FIRST[kind, backend]
        made = compiled(query, dialect)
        assert (made.sql, made.params) == (sql, (param,))
