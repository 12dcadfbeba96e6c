"""`db init` over tables that exist, on SQLite, MariaDB and PostgreSQL: it adds what the
declaration needs (version column, fields, lookup indexes), keeps every row as it was, and
refuses a declaration that contradicts the table in one line."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, inspect, text
from sqlalchemy.dialects import mysql

from tests.conftest import SQL_STORES, database_url
from twotier.resources import parse_resources
from twotier.store.sql import SQLStore
from twotier.store.sql_adopt import SchemaMismatch

BOOKS = """
[resources.books]
key = "isbn"
lookups = ["author"]

[resources.books.fields]
isbn   = { type = "string", max_length = 13 }
title  = { type = "string", max_length = 100 }
author = { type = "string", max_length = 60 }
{extra}
"""


def declared(extra: str = "", **changes: str) -> list[object]:
    text_ = BOOKS.replace("{extra}", extra)
    for old, new in changes.items():
        text_ = text_.replace(old, new)
    return list(parse_resources(text_, "books.toml"))


@pytest.fixture(params=SQL_STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    """SQL only: DynamoDB's tables have no columns to adopt (its indexes are added by
    ``init_schema``, tested with the store contract)."""
    return str(request.param)


@pytest.fixture
async def legacy(store_kind: str, tmp_path: object) -> AsyncIterator[str]:
    """A database whose `books` table someone else made: no version, no index, two rows."""
    url = database_url(store_kind, tmp_path)
    store = SQLStore(url, [])  # no resources: the database, and nothing of twotier's
    await store.init_schema()
    metadata = MetaData()
    books = Table(
        "books",
        metadata,
        Column("isbn", String(13), primary_key=True),
        Column("title", String(100), nullable=False),
        Column("author", String(60), nullable=False),
        Column("pages", Integer().with_variant(mysql.INTEGER(), "mysql"), nullable=True),
    )
    async with store.engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
        await conn.execute(
            insert(books),
            [
                {"isbn": "9780000000001", "title": "One", "author": "Ann", "pages": 10},
                {"isbn": "9780000000002", "title": "Two", "author": "Bob", "pages": None},
            ],
        )
    await store.close()
    try:
        yield url
    finally:
        store = SQLStore(url, [])
        async with store.engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
        await store.close()


async def test_an_existing_table_is_adopted_without_losing_a_row(legacy: str) -> None:
    extra = """
    pages  = { type = "integer", minimum = 0, maximum = 100000, nullable = true }
    format = { type = "string", max_length = 10, default = "paper" }
    note   = { type = "string", nullable = true }
    """
    store = SQLStore(legacy, declared(extra))  # type: ignore[arg-type]
    try:
        await store.init_schema()
        await store.init_schema()  # idempotent: nothing more to do the second time
        books = store.rows("books")
        one = await books.get("9780000000001")
        assert one is not None
        assert one.values == {
            "isbn": "9780000000001",
            "title": "One",
            "author": "Ann",
            "pages": 10,
            "format": "paper",
            "note": None,
        }
        assert one.version == 1  # every row adopted at version 1
        assert [r["isbn"] for r in (await books.lookup("author", ["Bob"]))["Bob"]] == [
            "9780000000002"
        ]
        updated = await books.update("9780000000002", {"note": "signed"})
        assert updated is not None
        assert updated[1].version == 2

        def indexes(sync_conn: object) -> list[list[str]]:
            return [list(i["column_names"]) for i in inspect(sync_conn).get_indexes("books")]

        async with store.engine.connect() as conn:
            assert ["author", "isbn"] in await conn.run_sync(indexes)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("extra", "changes", "says"),
    [
        ("", {"max_length = 100": "max_length = 200"}, "column 'title' is VARCHAR(100)"),
        (
            "",
            {'author = { type = "string", max_length = 60 }': 'author = { type = "number" }'},
            "column 'author' is VARCHAR(60); the declaration says number",
        ),
        (
            'pages = { type = "integer", minimum = 0, maximum = 4294967295, nullable = true }',
            {},
            "column 'pages' is INTEGER, which holds",
        ),
        ('shelf = { type = "string", max_length = 5 }', {}, "field 'shelf' is new, required"),
        ("", {"isbn   =": "code   =", 'key = "isbn"': 'key = "code"'}, "has no column 'code'"),
    ],
)
async def test_a_contradiction_is_refused_in_one_line(
    legacy: str, store_kind: str, extra: str, changes: dict[str, str], says: str
) -> None:
    if store_kind == "sqlite" and "INTEGER, which holds" in says:
        return  # SQLite's INTEGER holds 64 bits: no range can contradict it
    store = SQLStore(legacy, declared(extra, **changes))  # type: ignore[arg-type]
    try:
        with pytest.raises(SchemaMismatch) as refused:
            await store.init_schema()
    finally:
        await store.close()
    message = str(refused.value)
    assert message.startswith("table books (resources.books)"), message
    assert says in message, message
    assert "\n" not in message
    # Nothing was changed: the table is as it was.
    check = SQLStore(legacy, [])
    try:
        async with check.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT count(*) FROM books"))).scalar()

            def columns(sync_conn: object) -> list[str]:
                return [c["name"] for c in inspect(sync_conn).get_columns("books")]

            names = await conn.run_sync(columns)
    finally:
        await check.close()
    assert rows == 2
    assert "version" not in names or says.startswith("field")
