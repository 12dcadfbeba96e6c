"""`db init` over tables that exist, on SQLite, MariaDB and PostgreSQL: it adds what the
declaration needs (version column, fields, lookup indexes), keeps every row as it was, and
refuses a declaration that contradicts the table — every contradiction of every table in one
run, one line each — changing nothing then. Names are matched as the database matches them;
a key must name one row; a column must store the field's values exactly; an id the database
hands out is never given around its counter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, inspect, text
from sqlalchemy.dialects import mysql

from tests.conftest import SQL_STORES, database_url, open_store
from twotier.errors import KeyNotUnique, ResourceError, SchemaMismatch, StoreRefused
from twotier.resources import Resource, parse_resources
from twotier.store.base import Query
from twotier.store.sql import SQLStore

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


def declared(extra: str = "", **changes: str) -> list[Resource]:
    text_ = BOOKS.replace("{extra}", extra)
    for old, new in changes.items():
        text_ = text_.replace(old, new)
    return list(parse_resources(text_, "books.toml"))


@pytest.fixture(params=SQL_STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    """SQL only: DynamoDB's tables have no columns to adopt (its indexes are added by
    ``init_schema``, tested with the store contract)."""
    return str(request.param)


async def run_sql(url: str, *statements: str) -> None:
    """Statements as another application would run them, outside twotier."""
    store = SQLStore(url, [])
    try:
        async with store.engine.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await store.close()


async def scalar(url: str, query: str) -> object:
    store = SQLStore(url, [])
    try:
        async with store.engine.connect() as conn:
            return await conn.scalar(text(query))
    finally:
        await store.close()


async def columns_of(url: str, table: str) -> list[str]:
    store = SQLStore(url, [])
    try:
        async with store.engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: [c["name"] for c in inspect(sync).get_columns(table)]
            )
    finally:
        await store.close()


async def refused(url: str, resources: list[Resource]) -> list[str]:
    """The contradictions ``init_schema`` finds (it must find some)."""
    store = SQLStore(url, resources)
    try:
        with pytest.raises(SchemaMismatch) as raised:
            await store.init_schema()
    finally:
        await store.close()
    problems = list(raised.value.problems)
    assert problems
    assert all("\n" not in problem for problem in problems)
    return problems


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
        await run_sql(url, *(f"DROP TABLE IF EXISTS {name}" for name in _OTHER_TABLES))
        store = SQLStore(url, [])
        async with store.engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
        await store.close()


#: Tables some tests make beside the books (dropped after each test).
_OTHER_TABLES = ("pairs", "prices", "ids", "shelves", "reused", "codes")


async def test_an_existing_table_is_adopted_without_losing_a_row(legacy: str) -> None:
    extra = """
    pages  = { type = "integer", minimum = 0, maximum = 100000, nullable = true }
    format = { type = "string", max_length = 10, default = "paper" }
    note   = { type = "string", nullable = true }
    """
    store = SQLStore(legacy, declared(extra))
    try:
        done = [change.line for change in await store.init_schema()]
        assert any("books: add column version" in line for line in done), done
        assert any("books: add column format" in line for line in done), done
        assert await store.init_schema() == []  # idempotent: nothing more to do
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


async def test_the_plan_says_everything_and_changes_nothing(legacy: str) -> None:
    store = SQLStore(legacy, declared('note = { type = "string", nullable = true }'))
    try:
        changes = await store.init_schema(dry_run=True)
    finally:
        await store.close()
    planned = [change.line for change in changes]
    assert any(line.startswith("books: add column version BIGINT") for line in planned)
    assert any(line.startswith("books: add column note") for line in planned)
    assert any("create index" in line for line in planned)
    assert any("create trigger" in line for line in planned)
    assert await columns_of(legacy, "books") == ["isbn", "title", "author", "pages"]
    store = SQLStore(legacy, declared('note = { type = "string", nullable = true }'))
    try:
        assert await store.init_schema() == changes  # what it said it would do, it did
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
        ("", {'key = "isbn"': 'key = "title"'}, "key 'title' is neither the primary key"),
        ("", {"title  =": "name   ="}, "column 'title' is NOT NULL, has no default"),
    ],
)
async def test_a_contradiction_is_refused_in_one_line(
    legacy: str, store_kind: str, extra: str, changes: dict[str, str], says: str
) -> None:
    if store_kind == "sqlite" and "INTEGER, which holds" in says:
        return  # SQLite's INTEGER holds 64 bits: no range can contradict it
    problems = await refused(legacy, declared(extra, **changes))
    assert all(p.startswith("table books (resources.books)") for p in problems), problems
    assert any(says in problem for problem in problems), problems
    # Nothing was changed: the table is as it was.
    assert await scalar(legacy, "SELECT count(*) FROM books") == 2
    assert await columns_of(legacy, "books") == ["isbn", "title", "author", "pages"]


CODES = """
[resources.codes]
key = "code"
[resources.codes.fields]
code = { type = "string", max_length = 3, fixed = true }
label = { type = "string", max_length = 10, nullable = true, fixed = true }
"""


async def test_a_char_column_is_adopted_as_a_fixed_length_text(
    legacy: str, store_kind: str
) -> None:
    """A CHAR pads its text with spaces: declared `fixed`, it is read as written, whoever
    wrote it; declared as a plain string, it is refused, saying what to declare."""
    await run_sql(
        legacy,
        "CREATE TABLE codes (code CHAR(3) PRIMARY KEY, label CHAR(10))",
        "INSERT INTO codes (code, label) VALUES ('a', 'x y'), ('abc', NULL)",
    )
    if store_kind != "sqlite":  # SQLite's CHAR pads nothing: either declaration is right
        problems = await refused(
            legacy, list(parse_resources(CODES.replace(", fixed = true", ""), "c"))
        )
        assert any("declare the field `fixed = true`" in p for p in problems), problems
    store = SQLStore(legacy, list(parse_resources(CODES, "codes.toml")))
    try:
        await store.init_schema()
        rows = store.rows("codes")
        found = await rows.get("a")
        assert found is not None
        assert found.values == {"code": "a", "label": "x y"}
        assert (await rows.get("abc")).values == {"code": "abc", "label": None}  # type: ignore[union-attr]
        await rows.update("abc", {"label": "b"})
        assert await scalar(legacy, "SELECT count(*) FROM codes WHERE label = 'b'") == 1
    finally:
        await store.close()


async def test_every_contradiction_of_every_table_comes_in_one_run(
    legacy: str, store_kind: str
) -> None:
    """Three mistakes in two tables: three lines, one run, and nothing changed (not even
    the tables and columns the declarations would add where they are right)."""
    await run_sql(legacy, "CREATE TABLE shelves (code VARCHAR(5) PRIMARY KEY, place VARCHAR(9))")
    resources = [
        *declared(
            'shelf = { type = "string", max_length = 5 }',
            **{"max_length = 100": "max_length = 200"},
        ),
        *parse_resources(
            """
            [resources.shelves]
            key = "code"
            [resources.shelves.fields]
            code = { type = "string", max_length = 5 }
            place = { type = "integer" }
            [resources.fresh]
            [resources.fresh.fields]
            a = "string"
            """,
            "shelves.toml",
        ),
    ]
    problems = await refused(legacy, resources)
    assert len(problems) == 3, problems
    assert any("column 'title' is VARCHAR(100)" in p for p in problems)
    assert any("field 'shelf' is new" in p for p in problems)
    assert any(p.startswith("table shelves (resources.shelves): column 'place'") for p in problems)
    store = SQLStore(legacy, [])
    try:
        async with store.engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await store.close()
    assert "fresh" not in tables
    assert "version" not in await columns_of(legacy, "shelves")


async def test_a_key_that_names_many_rows_is_refused(legacy: str, store_kind: str) -> None:
    """A join table keyed by two columns, declared by one of them: refused, naming the
    table's real key. Served anyway, a DELETE by that column would remove every row with
    it (it did, answering 404)."""
    await run_sql(
        legacy,
        "CREATE TABLE pairs (left_id INTEGER NOT NULL, right_id INTEGER NOT NULL, "
        "PRIMARY KEY (left_id, right_id))",
        "INSERT INTO pairs VALUES (16, 1), (16, 2), (16, 3), (17, 1)",
    )
    [pairs] = parse_resources(
        """
        [resources.pairs]
        key = "left_id"
        [resources.pairs.fields]
        left_id = { type = "integer", minimum = 0, maximum = 1000 }
        right_id = { type = "integer", minimum = 0, maximum = 1000 }
        """,
        "pairs.toml",
    )
    problems = await refused(legacy, [pairs])
    assert len(problems) == 1, problems
    [problem] = problems
    assert "key 'left_id' is neither the primary key nor a unique column" in problem
    assert "the table's keys are (left_id, right_id)" in problem
    assert await scalar(legacy, "SELECT count(*) FROM pairs") == 4


async def test_a_write_by_a_key_that_lost_its_uniqueness_changes_nothing(
    legacy: str, store_kind: str
) -> None:
    """Uniqueness is checked where each write reads its row: a table whose key stopped
    being unique after start-up (an index dropped, a duplicate inserted) answers
    KeyNotUnique, and no row is deleted or changed."""
    await run_sql(legacy, "CREATE TABLE reused (code VARCHAR(5) NOT NULL, n INTEGER)")
    await run_sql(legacy, "CREATE UNIQUE INDEX reused_code ON reused (code)")
    [reused] = parse_resources(
        """
        [resources.reused]
        key = "code"
        [resources.reused.fields]
        code = { type = "string", max_length = 5 }
        n = { type = "integer", nullable = true, minimum = 0, maximum = 1000 }
        """,
        "reused.toml",
    )
    store = SQLStore(legacy, [reused])
    try:
        await store.init_schema()  # unique: served
        drop = "DROP INDEX reused_code" + (" ON reused" if store_kind == "mysql" else "")
        await run_sql(legacy, drop, "INSERT INTO reused (code, n) VALUES ('a', 1), ('a', 2)")
        rows = store.rows("reused")
        with pytest.raises(KeyNotUnique):
            await rows.delete("a")
        with pytest.raises(KeyNotUnique):
            await rows.update("a", {"n": 5})
        with pytest.raises(KeyNotUnique):
            await rows.get("a")
    finally:
        await store.close()
    assert await scalar(legacy, "SELECT count(*) FROM reused WHERE code = 'a'") == 2
    assert await scalar(legacy, "SELECT sum(n) FROM reused") == 3


NUMBERS = {
    "sqlite": ("NUMERIC(10,2)", "INTEGER", None),
    "mysql": ("DECIMAL(10,2)", "INTEGER", "FLOAT"),
    "postgres": ("NUMERIC(10,2)", "INTEGER", "REAL"),
}


async def test_a_column_that_would_round_a_value_is_refused(legacy: str, store_kind: str) -> None:
    """A number is a double: a NUMERIC column would store 0.13 where the cache holds 0.125,
    an INTEGER 0, a single-precision float 0.1000000015; each is refused, saying why."""
    kinds = [
        (name, kind)
        for name, kind in zip(("exact", "whole", "single"), NUMBERS[store_kind], strict=True)
        if kind
    ]
    definitions = ", ".join(f"{name} {kind}" for name, kind in kinds)
    await run_sql(legacy, f"CREATE TABLE prices (code VARCHAR(5) PRIMARY KEY, {definitions})")
    fields = "\n".join(f'{name} = {{ type = "number", nullable = true }}' for name, _ in kinds)
    [prices] = parse_resources(
        "[resources.prices]\nkey = 'code'\n[resources.prices.fields]\n"
        f"code = {{ type = 'string', max_length = 5 }}\n{fields}",
        "prices.toml",
    )
    problems = await refused(legacy, [prices])
    assert any("'exact'" in p and "an exact decimal" in p for p in problems), problems
    assert any("'whole'" in p and "whole numbers only" in p for p in problems), problems
    if len(kinds) == 3:
        assert any("'single'" in p and "keeps fewer digits" in p for p in problems), problems
    assert len(problems) == len(kinds)


async def test_timestamps_are_kept_to_the_columns_precision(legacy: str, store_kind: str) -> None:
    """A date-time column that keeps whole seconds (MySQL's DATETIME, PostgreSQL's
    TIMESTAMP(0)) would round what the cache holds: refused until the field declares that
    precision; then finer digits are cut before the value is stored, and the row read back
    from the database is the one written. PostgreSQL's TIMESTAMP WITHOUT TIME ZONE is
    refused: a timestamp is an instant with its offset."""
    if store_kind == "sqlite":
        return  # SQLite keeps date-times as text, every digit
    column = "DATETIME" if store_kind == "mysql" else "TIMESTAMP(0) WITH TIME ZONE"
    await run_sql(legacy, f"CREATE TABLE ids (code VARCHAR(5) PRIMARY KEY, at {column})")
    spec = """
        [resources.ids]
        key = "code"
        [resources.ids.fields]
        code = { type = "string", max_length = 5 }
        at = { type = "timestamp", nullable = true PRECISION }
    """
    [problem] = await refused(legacy, list(parse_resources(spec.replace(" PRECISION", ""), "t")))
    assert "keeps 0 fractional digits of a second" in problem
    assert "declare precision = 0" in problem
    [ids] = parse_resources(spec.replace(" PRECISION", ", precision = 0"), "ids.toml")
    store = SQLStore(legacy, [ids])
    try:
        await store.init_schema()
        rows = store.rows("ids")
        value = ids.create_model.model_validate({"code": "a", "at": "2026-01-02T03:04:05.9Z"})
        [made] = await rows.create_many([value.model_dump()])
        assert made["at"].isoformat() == "2026-01-02T03:04:05+00:00"  # cut, not rounded
        again = await rows.get("a")
        assert again is not None
        assert again["at"] == made["at"]
    finally:
        await store.close()
    if store_kind == "postgres":
        await run_sql(legacy, "CREATE TABLE prices (code VARCHAR(5) PRIMARY KEY, at TIMESTAMP)")
        [naive] = await refused(
            legacy,
            list(parse_resources(spec.replace("ids", "prices").replace(" PRECISION", ""), "t")),
        )
        assert "a date-time without a time zone" in naive


SEQUENCED = {
    "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "mysql": "INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY",
    "postgres": "SERIAL PRIMARY KEY",
}


async def test_ids_the_database_hands_out_are_never_given_around_it(
    legacy: str, store_kind: str
) -> None:
    """An id column with a sequence (SERIAL, AUTO_INCREMENT, AUTOINCREMENT) declared as a
    client-given key is refused (on PostgreSQL, ids given around the sequence made the
    user's own next INSERT fail on a duplicate key); declared as the automatic id, under
    its own name, twotier's creates and the user's own inserts take turns from one
    counter."""
    await run_sql(
        legacy,
        f'CREATE TABLE ids ("ShelfId" {SEQUENCED[store_kind]}, label VARCHAR(9) NOT NULL)'.replace(
            '"', "`" if store_kind == "mysql" else '"'
        ),
        "INSERT INTO ids (label) VALUES ('theirs')",
    )
    client_given = """
        [resources.ids]
        key = "ShelfId"
        [resources.ids.fields]
        ShelfId = { type = "integer", minimum = 1, maximum = 2147483647 }
        label = { type = "string", max_length = 9 }
    """
    [problem] = await refused(legacy, list(parse_resources(client_given, "ids.toml")))
    assert "column 'ShelfId' takes its values from the database" in problem
    assert 'declare it as the automatic id, id = "ShelfId"' in problem
    [ids] = parse_resources(
        """
        [resources.ids]
        id = { name = "ShelfId", maximum = 2147483647 }
        [resources.ids.fields]
        label = { type = "string", max_length = 9 }
        """,
        "ids.toml",
    )
    store = SQLStore(legacy, [ids])
    try:
        await store.init_schema()
        [ours] = await store.rows("ids").create_many([{"label": "ours"}])
        assert ours.key == 2
        assert ours.values == {"ShelfId": 2, "label": "ours"}
    finally:
        await store.close()
    await run_sql(legacy, "INSERT INTO ids (label) VALUES ('theirs 2')")  # no duplicate key
    assert await scalar(legacy, "SELECT max(label) FROM ids") == "theirs 2"
    assert await scalar(legacy, "SELECT count(*) FROM ids") == 3


async def test_an_automatic_id_needs_a_column_the_database_fills(legacy: str) -> None:
    await run_sql(legacy, "CREATE TABLE ids (num INTEGER NOT NULL, label VARCHAR(9))")
    await run_sql(legacy, "CREATE UNIQUE INDEX ids_num ON ids (num)")
    [problem] = await refused(
        legacy,
        list(
            parse_resources(
                '[resources.ids]\nid = { name = "num", maximum = 1000 }\n'
                '[resources.ids.fields]\nlabel = { type = "string", max_length = 9 }',
                "ids",
            )
        ),
    )
    assert "column 'num' gets no value from the database" in problem
    assert 'declare it as a client-given key, key = "num"' in problem


NAMES = {
    # (the table as made, its key column, the declaration's spelling, adopted?)
    "sqlite": ("[Shelves]", "[ShelfCode]", ("shelves", "shelfcode"), True),
    "mysql": ("`Shelves`", "`ShelfCode`", ("Shelves", "shelfcode"), True),
    "postgres": ('"Shelves"', '"ShelfCode"', ("Shelves", "ShelfCode"), True),
}


async def test_names_are_matched_as_the_database_matches_them(legacy: str, store_kind: str) -> None:
    """SQLite takes every name in any case, MySQL column names (and table names as its
    lower_case_table_names says), PostgreSQL a quoted name only as written. A table adopted
    under another spelling gets its version column before the triggers that use it (they
    broke every insert, update and delete of the user's own application: `no such column:
    OLD.version`), and stays the user's to write as before."""
    table, key, (declared_table, declared_key), _ = NAMES[store_kind]
    await run_sql(
        legacy,
        f"CREATE TABLE {table} ({key} VARCHAR(5) PRIMARY KEY, label VARCHAR(9))",
        f"INSERT INTO {table} ({key}, label) VALUES ('a', 'first')",
    )
    [shelves] = parse_resources(
        f"""
        [resources.shelves]
        table = "{declared_table}"
        key = "{declared_key}"
        [resources.shelves.fields]
        {declared_key} = {{ type = "string", max_length = 5 }}
        label = {{ type = "string", max_length = 9, nullable = true }}
        """,
        "shelves.toml",
    )
    store = SQLStore(legacy, [shelves])
    try:
        done = [change.line for change in await store.init_schema()]
        assert not any(line.startswith("create table") and "helves" in line for line in done)
        assert "version" in await columns_of(legacy, "Shelves")
        rows = store.rows("shelves")
        first = await rows.get("a")
        assert first is not None
        assert first.values == {declared_key: "a", "label": "first"}
        # The user's own application, as before.
        await run_sql(
            legacy,
            f"INSERT INTO {table} ({key}, label) VALUES ('b', 'second')",
            f"UPDATE {table} SET label = 'changed' WHERE {key} = 'a'",
            f"DELETE FROM {table} WHERE {key} = 'b'",
        )
        again = await rows.get("a")
        assert again is not None
        assert again["label"] == "changed"
        assert again.version == 2  # the trigger moved it
    finally:
        await store.close()
        await run_sql(legacy, f"DROP TABLE {table}")


async def test_a_change_that_fails_undoes_the_others(legacy: str, store_kind: str) -> None:
    """Where DDL is transactional (SQLite, PostgreSQL), db init makes every change it planned
    or none: an index it cannot create (its name taken by a table) leaves the books without
    the version column and the triggers planned before it."""
    if store_kind == "mysql":
        return  # MySQL commits each DDL statement: no change depends on a failed one there
    await run_sql(legacy, "CREATE TABLE ix_books_author_isbn (x INTEGER)")
    store = SQLStore(legacy, declared())
    try:
        with pytest.raises(Exception, match="ix_books_author_isbn"):
            await store.init_schema()
    finally:
        await store.close()
        await run_sql(legacy, "DROP TABLE ix_books_author_isbn")
    assert await columns_of(legacy, "books") == ["isbn", "title", "author", "pages"]


async def test_an_enumeration_is_adopted_with_its_values(legacy: str, store_kind: str) -> None:
    """MySQL's ENUM is a string field that lists (some of) its values; declared without
    them, or with one it does not hold, it is refused, saying which to list. PostgreSQL's
    enumeration type is named too (`enum`), so that values are bound as that type; SQLite
    has none (a CHECK it enforces itself)."""
    if store_kind == "sqlite":
        pytest.skip("SQLite has no enumeration type")
    if store_kind == "mysql":
        await run_sql(
            legacy,
            "CREATE TABLE films (code VARCHAR(5) PRIMARY KEY, "
            "rating ENUM('G', 'PG', 'PG-13') NOT NULL DEFAULT 'G')",
        )
    else:
        await run_sql(
            legacy,
            "DROP TYPE IF EXISTS film_rating",
            "CREATE TYPE film_rating AS ENUM ('G', 'PG', 'PG-13')",
            "CREATE TABLE films (code VARCHAR(5) PRIMARY KEY, rating film_rating NOT NULL)",
        )

    def films(rating: str) -> list[Resource]:
        return list(
            parse_resources(
                "[resources.films]\nkey = 'code'\n[resources.films.fields]\n"
                f"code = {{ type = 'string', max_length = 5 }}\nrating = {rating}",
                "films.toml",
            )
        )

    try:
        problems = await refused(legacy, films("{ type = 'string', max_length = 5 }"))
        named = ", enum = 'film_rating'" if store_kind == "postgres" else ""
        if store_kind == "postgres":
            assert problems == [
                "table films (resources.films): column 'rating' is film_rating; a PostgreSQL "
                'enumeration type: declare enum = "film_rating", values = ["G", "PG", "PG-13"]'
            ]
        else:
            assert any('declare values = ["G", "PG", "PG-13"]' in p for p in problems), problems
        problems = await refused(
            legacy, films(f"{{ type = 'string', values = ['G', 'R']{named} }}")
        )
        assert any("not R: declare values among them" in p for p in problems), problems
        store = SQLStore(legacy, films(f"{{ type = 'string', values = ['G', 'PG']{named} }}"))
        try:
            await store.init_schema()
            rows = store.rows("films")
            made = await rows.create_many(
                [{"code": "a", "rating": "PG"}, {"code": "b", "rating": "G"}]
            )
            assert made[0]["rating"] == "PG"
            # Compared, bound and set as the type's values (a text would not compare).
            assert [r.key for r in (await rows.lookup("rating", ["PG"]))["PG"]] == ["a"]
            changed = await rows.update("b", {"rating": "PG"})
            assert changed is not None
            assert (await rows.get("b")).values["rating"] == "PG"  # type: ignore[union-attr]
            page = await rows.find(Query(filters=(("rating", "PG"),), limit=10))
            assert [r.key for r in page] == ["a", "b"]
        finally:
            await store.close()
    finally:
        await run_sql(legacy, "DROP TABLE IF EXISTS films")
        if store_kind == "postgres":
            await run_sql(legacy, "DROP TYPE IF EXISTS film_rating")


async def test_a_foreign_key_is_introspected_as_a_lookup_and_indexed(
    legacy: str, store_kind: str
) -> None:
    """The rows that point at a row are a lookup (a nested collection's read) whether or not
    an index serves the foreign key yet: db init makes one where none does (MySQL makes one
    itself)."""
    await run_sql(
        legacy,
        "CREATE TABLE parents (id INTEGER PRIMARY KEY, name VARCHAR(20))",
        "CREATE TABLE children (id INTEGER PRIMARY KEY, "
        "parent_id INTEGER REFERENCES parents (id), note VARCHAR(20))",
    )
    try:
        store = SQLStore(legacy, [])
        try:
            found = {item.table: item for item in await store.introspect(["children"])}
        finally:
            await store.close()
        settings = found["children"].settings
        assert settings is not None
        assert settings["lookups"] == ["parent_id"]
        [children] = parse_resources(
            "[resources.children]\ntable = 'children'\nkey = 'id'\n"
            "lookups = ['parent_id']\n[resources.children.fields]\n"
            "id = { type = 'integer', minimum = -2147483648, maximum = 2147483647 }\n"
            "parent_id = { type = 'integer', minimum = -2147483648, maximum = 2147483647, "
            "nullable = true }\nnote = { type = 'string', max_length = 20, nullable = true }",
            "children.toml",
        )
        store = SQLStore(legacy, [children])
        try:
            planned = [change.line for change in await store.init_schema(dry_run=True)]
        finally:
            await store.close()
        indexed = any("create index" in line and "parent_id" in line for line in planned)
        assert indexed is (store_kind != "mysql"), planned
    finally:
        await run_sql(legacy, "DROP TABLE IF EXISTS children", "DROP TABLE IF EXISTS parents")


async def test_plain_column_defaults_are_introspected_as_field_defaults(legacy: str) -> None:
    """A new row that leaves a field out gets from twotier what the database would give it;
    an expression (a clock, a sequence) is no value to copy."""
    await run_sql(
        legacy,
        "CREATE TABLE shelves (code VARCHAR(5) PRIMARY KEY, "
        "label VARCHAR(10) NOT NULL DEFAULT 'it''s new', "
        "slots INTEGER NOT NULL DEFAULT 12, "
        "price NUMERIC(6, 2) NOT NULL DEFAULT 1.50, "
        "ratio DOUBLE PRECISION NOT NULL DEFAULT -0.5, "
        "made TIMESTAMP NULL DEFAULT CURRENT_TIMESTAMP)",
    )
    try:
        store = SQLStore(legacy, [])
        try:
            [shelves] = await store.introspect(["shelves"])
        finally:
            await store.close()
        assert shelves.settings is not None
        fields = shelves.settings["fields"]
        assert fields["label"]["default"] == "it's new"
        assert fields["slots"]["default"] == 12
        assert fields["price"]["default"] == "1.50"
        assert fields["ratio"]["default"] == -0.5
        assert "default" not in fields["made"]
    finally:
        await run_sql(legacy, "DROP TABLE IF EXISTS shelves")


STAMPED = """
[resources.stamped]
key = "id"
[resources.stamped.fields]
id = { type = "integer", minimum = 1, maximum = 2147483647 }
name = { type = "string", max_length = 20 }
touched = { type = "integer", minimum = 0, maximum = 2147483647, default = 0 }
"""

#: A trigger of the user's own that changes each updated row (as Sakila's last_update does).
_TOUCHING = {
    "sqlite": [
        "CREATE TRIGGER stamped_touch AFTER UPDATE OF name ON stamped FOR EACH ROW "
        "BEGIN UPDATE stamped SET touched = OLD.touched + 1 WHERE id = NEW.id; END"
    ],
    "mysql": [
        "CREATE TRIGGER stamped_touch BEFORE UPDATE ON stamped FOR EACH ROW "
        "SET NEW.touched = OLD.touched + 1"
    ],
    "postgres": [
        "CREATE FUNCTION stamped_touch() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN NEW.touched := OLD.touched + 1; RETURN NEW; END $$",
        "CREATE TRIGGER stamped_touch BEFORE UPDATE ON stamped FOR EACH ROW "
        "EXECUTE FUNCTION stamped_touch()",
    ],
}


async def test_a_row_the_database_changes_as_it_is_written_is_kept_as_stored(
    legacy: str, store_kind: str
) -> None:
    """The user's trigger changes a column of every updated row: the row a write answers
    (and the cache keeps) is the one stored, not the one sent."""
    await run_sql(
        legacy,
        "CREATE TABLE stamped (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL, "
        "touched INTEGER NOT NULL DEFAULT 0)",
        *_TOUCHING[store_kind],
    )
    store = SQLStore(legacy, list(parse_resources(STAMPED, "stamped.toml")))
    try:
        await store.init_schema()
        rows = store.rows("stamped")
        await rows.create_many([{"id": 1, "name": "a", "touched": 0}])
        changed = await rows.update(1, {"name": "b"})
        assert changed is not None
        assert changed[1].values["touched"] == 1  # as the trigger left it
        stored = await rows.get(1)
        assert stored is not None
        assert changed[1].values == stored.values
        assert changed[1].version == stored.version
        _, replaced = await rows.put(1, {"name": "c", "touched": 0})
        assert replaced.values == (await rows.get(1)).values  # type: ignore[union-attr]
    finally:
        await store.close()
        await run_sql(legacy, "DROP TABLE IF EXISTS stamped")
        if store_kind == "postgres":
            await run_sql(legacy, "DROP FUNCTION IF EXISTS stamped_touch()")


FILLED = """
[resources.filled]
key = "id"
[resources.filled.fields]
id = { type = "integer", minimum = 1, maximum = 2147483647 }
name = { type = "string", max_length = 20 }
made = { type = "local_datetime", precision = 0, database_default = true }
"""


async def test_a_column_the_database_fills_may_be_left_out(legacy: str, store_kind: str) -> None:
    """`database_default`: a new row that leaves the field out gets the column's own DEFAULT
    (CURRENT_TIMESTAMP), and what is answered and cached is the row as stored; a row replaced
    without it keeps its value."""
    await run_sql(
        legacy,
        "CREATE TABLE filled (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL, "
        f"made {'TIMESTAMP' if store_kind == 'postgres' else 'DATETIME'} NOT NULL "
        "DEFAULT CURRENT_TIMESTAMP)",
    )
    store = SQLStore(legacy, list(parse_resources(FILLED, "filled.toml")))
    try:
        await store.init_schema()
        rows = store.rows("filled")
        [one] = await rows.create_many([{"id": 1, "name": "a"}])
        stored = await rows.get(1)
        assert stored is not None
        assert one.values["made"] is not None
        assert one.values == stored.values
        given = datetime(2001, 2, 3, 4, 5, 6)
        two, three = await rows.create_many(
            [{"id": 2, "name": "b", "made": given}, {"id": 3, "name": "c"}]
        )
        assert two.values["made"] == given
        assert three.values["made"] is not None
        created, four = await rows.put(4, {"name": "d"})
        assert created is None
        assert four.values["made"] is not None
        assert four.values == (await rows.get(4)).values  # type: ignore[union-attr]
        before, again = await rows.put(2, {"name": "bb"})
        assert before is not None
        assert again.values["made"] == given  # replaced without it: kept
    finally:
        await store.close()
        await run_sql(legacy, "DROP TABLE IF EXISTS filled")


async def test_database_default_needs_a_column_with_a_default(legacy: str) -> None:
    await run_sql(legacy, "CREATE TABLE filled (id INTEGER PRIMARY KEY, name VARCHAR(20))")
    try:
        problems = await refused(legacy, list(parse_resources(FILLED, "filled.toml")))
        assert any("there is no such column: twotier adds none" in p for p in problems), problems
        await run_sql(legacy, "ALTER TABLE filled ADD COLUMN made TIMESTAMP")
        bare = FILLED.replace("database_default = true", "database_default = true, x = 1")
        with pytest.raises(ResourceError, match="'x' does not apply"):
            parse_resources(bare, "bare.toml")
    finally:
        await run_sql(legacy, "DROP TABLE IF EXISTS filled")


def test_dynamodb_fills_nothing_itself(moto_endpoint: str) -> None:
    url = f"dynamodb://?endpoint_url={moto_endpoint}&region=us-east-1&table_prefix=f_"
    with pytest.raises(StoreRefused, match=r"fields.made: DynamoDB fills no attribute"):
        open_store(url, parse_resources(FILLED, "filled.toml"))


async def test_a_chosen_postgresql_schema_is_served(legacy: str, store_kind: str) -> None:
    """libpq's `options` in the URL (`-c search_path=sales`) choose the schema every
    connection works in: introspected, adopted, written, read and bulk loaded there, the
    default schema's tables left alone."""
    if store_kind != "postgres":
        pytest.skip("PostgreSQL's schemas")
    await run_sql(
        legacy,
        "DROP SCHEMA IF EXISTS sales CASCADE",
        "CREATE SCHEMA sales",
        "CREATE TABLE sales.orders (id SERIAL PRIMARY KEY, total NUMERIC(10, 2) NOT NULL)",
        "INSERT INTO sales.orders (total) VALUES (1.50)",
    )
    url = legacy + ("&" if "?" in legacy else "?") + "options=-csearch_path%3Dsales"
    try:
        reader = SQLStore(url, [])
        try:
            found = await reader.introspect()
        finally:
            await reader.close()
        assert [item.table for item in found] == ["orders"]
        orders = """
        [resources.orders]
        id = { maximum = 2147483647 }
        [resources.orders.fields]
        total = { type = "decimal", precision = 10, scale = 2 }
        """
        store = SQLStore(url, list(parse_resources(orders, "orders.toml")))
        try:
            await store.init_schema()
            rows = store.rows("orders")
            assert (await rows.get(1)).values["total"] == Decimal("1.50")  # type: ignore[union-attr]
            [made] = await rows.create_many([{"total": Decimal("2.50")}])
            loaded = [((10, Decimal("9.99")), "line 2")]
            assert await rows.bulk_load(loaded, replace=False, keep=lambda: True) == 1
            assert sorted((await rows.get_many([made.key, 10])).keys()) == [made.key, 10]
        finally:
            await store.close()
        assert await scalar(legacy, "SELECT count(*) FROM sales.orders") == 3
        assert await scalar(legacy, "SELECT count(*) > 0 FROM sales.twotier_meta") is True
    finally:
        await run_sql(legacy, "DROP SCHEMA IF EXISTS sales CASCADE")


async def test_a_database_url_parameter_no_connection_takes_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown database URL parameter 'foo'"):
        SQLStore("postgresql://u@127.0.0.1/db?foo=bar", [])
    with pytest.raises(ValueError, match="takes settings only"):
        SQLStore("postgresql://u@127.0.0.1/db?options=--single", [])
