"""Versions the database keeps itself (``store/sql_triggers.py``), on SQLite, MariaDB and
PostgreSQL: a write by plain SQL, bypassing twotier, still moves the row's version, and
twotier's own writes are left exactly as they were."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from tests.conftest import DECLARED, SQL_STORES, database_url, emptied
from tests.heroes import create, hero
from twotier.resources import load_resources
from twotier.store.sql import SQLStore


@pytest.fixture(params=SQL_STORES)
async def sql(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[SQLStore]:
    store = SQLStore(database_url(str(request.param), tmp_path), load_resources(DECLARED))
    async with emptied(store):
        yield store


async def version_of(store: SQLStore, table: str, key: str, value: object) -> int:
    async with store.engine.connect() as conn:
        found = await conn.scalar(
            text(f"SELECT version FROM {table} WHERE {key} = :value"), {"value": value}
        )
    assert found is not None
    return int(found)


async def run(store: SQLStore, statement: str, **values: object) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(text(statement), values)


async def test_a_plain_insert_is_born_from_the_database_clock(sql: SQLStore) -> None:
    before = time.time_ns() // 1000
    await run(
        sql,
        "INSERT INTO products (sku, name, category, price, stock, active) "
        "VALUES ('p-1', 'Lamp', 'home', 1.5, 2, true)",
    )
    born = await version_of(sql, "products", "sku", "p-1")
    # The database's clock, in microseconds: SQLite's reads to the millisecond.
    assert before - 1_000_000 < born < time.time_ns() // 1000 + 1_000_000


async def test_a_plain_update_moves_the_version_by_one(sql: SQLStore) -> None:
    made = await create(sql.rows("heroes"), hero("Ann"))
    await run(sql, "UPDATE superheroes SET xp = xp + 1 WHERE id = :id", id=made["id"])
    assert await version_of(sql, "superheroes", "id", made["id"]) == made.version + 1
    # Several rows in one statement: each moves.
    other = await create(sql.rows("heroes"), hero("Bob"))
    await run(sql, "UPDATE superheroes SET color = 'x'")
    assert await version_of(sql, "superheroes", "id", made["id"]) == made.version + 2
    assert await version_of(sql, "superheroes", "id", other["id"]) == other.version + 1


async def test_twotiers_own_writes_are_left_as_they_are(sql: SQLStore) -> None:
    heroes = sql.rows("heroes")
    made = await create(heroes, hero("Ann"))
    assert await version_of(sql, "superheroes", "id", made["id"]) == made.version
    result = await heroes.update(made["id"], {"xp": 7})
    assert result is not None
    before, after = result
    assert after.version == before.version + 1
    assert await version_of(sql, "superheroes", "id", made["id"]) == after.version
    # A plain update after twotier's, then twotier's again: one step each, no double step.
    await run(sql, "UPDATE superheroes SET xp = 8 WHERE id = :id", id=made["id"])
    result = await heroes.update(made["id"], {"xp": 9})
    assert result is not None
    assert result[0].version == after.version + 1
    assert result[1].version == after.version + 2
    assert await heroes.get(made["id"]) == result[1]


async def test_init_is_idempotent_and_adds_the_triggers_to_an_adopted_table(
    sql: SQLStore,
) -> None:
    await sql.init_schema()  # a second time: the triggers are there, nothing changes
    async with sql.engine.begin() as conn:
        await conn.execute(text("DROP TABLE products"))
        await conn.execute(
            text(
                "CREATE TABLE products (sku VARCHAR(32) PRIMARY KEY, name VARCHAR(200) NOT NULL,"
                " category VARCHAR(40) NOT NULL, price DOUBLE PRECISION NOT NULL,"
                " stock BIGINT NOT NULL, active BOOLEAN NOT NULL)"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO products (sku, name, category, price, stock, active)"
                " VALUES ('old', 'Old', 'home', 1, 1, true)"
            )
        )
    await sql.init_schema()  # adopts it: the version column, then the triggers
    assert await version_of(sql, "products", "sku", "old") == 1
    await run(sql, "UPDATE products SET name = 'Older' WHERE sku = 'old'")
    assert await version_of(sql, "products", "sku", "old") == 2
