"""The store contract: SQLite, MariaDB and PostgreSQL behave the same, for real."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import inspect

from tests.heroes import UINT_MAX, create, hero
from twotier.store.base import Query
from twotier.store.sql import SQLStore
from twotier.store.sql_rows import SQLRows


@pytest.fixture
def heroes(store: SQLStore) -> SQLRows:
    return store.rows("heroes")


async def test_schema_is_idempotent_and_has_the_seed_shape(store: SQLStore) -> None:
    await store.init_schema()
    await store.init_schema()

    def columns(sync_conn: object) -> tuple[list[str], list[list[str]]]:
        inspector = inspect(sync_conn)
        cols = [c["name"] for c in inspector.get_columns("superheroes")]
        indexes = [list(i["column_names"]) for i in inspector.get_indexes("superheroes")]
        return cols, indexes

    async with store.engine.connect() as conn:
        cols, indexes = await conn.run_sync(columns)
    assert cols == ["id", "name", "hero", "power", "xp", "color", "version"]
    assert ["xp", "id"] in indexes


async def test_create_then_get(heroes: SQLRows) -> None:
    before = time.time_ns() // 1000
    created = await create(heroes, hero())
    assert created["id"] >= 1
    assert created.version >= before  # born from the clock, in microseconds
    assert await heroes.get(created["id"]) == created
    assert await heroes.get(created["id"] + 1000) is None


async def test_create_many_keeps_order_and_is_one_transaction(heroes: SQLRows) -> None:
    made = await heroes.create_many([hero(f"h{i}", xp=i) for i in range(50)])
    assert [r["name"] for r in made] == [f"h{i}" for i in range(50)]
    assert len({r["id"] for r in made}) == 50
    for record in made[::10]:
        assert await heroes.get(record["id"]) == record

    # A row the database refuses (xp out of range, past validation) fails the whole batch.
    bad = hero("bad") | {"xp": -1}  # past validation
    with pytest.raises(Exception):  # noqa: B017, PT011 - each dialect names its own error
        await heroes.create_many([hero("ok1"), bad, hero("ok2")])
    assert await heroes.count() == 50


async def test_update_bumps_version_and_returns_before_and_after(heroes: SQLRows) -> None:
    created = await create(heroes, hero(xp=5))
    result = await heroes.update(created["id"], {"xp": 6, "name": "Bea"})
    assert result is not None
    before, after = result
    assert before == created
    assert (after["xp"], after["name"], after.version) == (6, "Bea", created.version + 1)
    assert await heroes.get(created["id"]) == after
    assert await heroes.update(created["id"] + 1000, {"xp": 1}) is None


async def test_delete_returns_the_row_it_removed(heroes: SQLRows) -> None:
    created = await create(heroes, hero())
    assert await heroes.delete(created["id"]) == created
    assert await heroes.get(created["id"]) is None
    assert await heroes.delete(created["id"]) is None


async def test_find_filters_orders_by_id_and_pages(heroes: SQLRows) -> None:
    made = await heroes.create_many(
        [hero(f"n{i}", xp=i % 3, color="red" if i % 2 else "blue") for i in range(12)]
    )
    xp1 = [r for r in made if r["xp"] == 1]
    assert await heroes.find(Query((("xp", 1),), limit=100)) == xp1
    assert await heroes.find(Query((("xp", 1), ("color", "red")))) == [
        r for r in xp1 if r["color"] == "red"
    ]
    first = await heroes.find(Query(limit=5))
    second = await heroes.find(Query(after=first[-1]["id"], limit=5))
    assert first + second == made[:10]
    assert await heroes.find(Query((("name", "nobody"),))) == []


async def test_text_is_stored_exactly(heroes: SQLRows) -> None:
    tricky = [
        "Robert'); DROP TABLE",
        "🦸\u200d♀️ héroïne ñ",
        "a" * 20,
        "x' OR '1'='1",
        'back\\slash "q"',
        "%_ wildcards",
        "",
    ]
    made = await heroes.create_many([hero(name=text, xp=UINT_MAX) for text in tricky])
    for record, text in zip(made, tricky, strict=True):
        stored = await heroes.get(record["id"])
        assert stored is not None
        assert (stored["name"], stored["xp"]) == (text, UINT_MAX)
    assert [r["name"] for r in await heroes.find(Query((("name", "%_ wildcards"),)))] == [
        "%_ wildcards"
    ]


async def test_concurrent_updates_lose_nothing(heroes: SQLRows) -> None:
    created = await create(heroes, hero(xp=0))
    results = await asyncio.gather(*(heroes.update(created["id"], {"xp": i}) for i in range(1, 21)))
    versions = sorted(r[1].version - created.version for r in results if r is not None)
    assert versions == list(range(1, 21))  # every write saw the one before it
    final = await heroes.get(created["id"])
    assert final is not None
    assert final.version == created.version + 20


async def test_concurrent_replaces_and_deletes_lose_nothing(heroes: SQLRows) -> None:
    """Writes of one row race (each reads, then changes it if still at the version read;
    the losers try again, then take the row's lock): every one lands once, in some order."""
    created = await create(heroes, hero(xp=0))
    values = hero(xp=0) | {"id": created["id"]}
    results = await asyncio.gather(
        *(heroes.put(created["id"], values | {"xp": i}) for i in range(1, 21))
    )
    versions = sorted(after.version - created.version for _, after in results)
    assert versions == list(range(1, 21))
    assert all(before is not None for before, _ in results)
    deleted = await asyncio.gather(*(heroes.delete(created["id"]) for _ in range(10)))
    assert [d.version for d in deleted if d is not None] == [created.version + 20]
    assert await heroes.get(created["id"]) is None


async def test_count_and_ping(store: SQLStore) -> None:
    await store.ping()
    assert await store.rows("heroes").count() == 0
    await store.rows("heroes").create_many([hero(f"c{i}") for i in range(3)])
    assert await store.rows("heroes").count() == 3


async def test_schema_creation_tolerates_concurrent_creators(store: SQLStore) -> None:
    await store.drop_schema()
    others = [SQLStore(store.url.render_as_string(hide_password=False)) for _ in range(6)]
    try:
        await asyncio.gather(*(other.init_schema() for other in others))
    finally:
        for other in others:
            await other.close()
    assert await store.rows("heroes").count() == 0


SPELLINGS = ["Zoë", "zoë", "ZOË", "Zoe", "zoe", "Zoë ", " Zoë", "Zoë\u0301", "Straße", "STRASSE"]


async def test_filters_match_exactly_on_every_store(heroes: SQLRows) -> None:
    # MySQL's default collation would match other cases, accents and trailing spaces: the
    # same spellings must find the same rows on every store (the cache keys them apart).
    made = {name: (await create(heroes, hero(name))).key for name in SPELLINGS}
    for name in SPELLINGS:
        found = await heroes.find(Query((("name", name),)))
        assert [r["id"] for r in found] == [made[name]], name
        both = await heroes.find(Query((("name", name), ("xp", 10))))
        assert [r["id"] for r in both] == [made[name]], name
    for absent in ["ZOE ", "strasse", "Zoe\u0308"]:
        assert await heroes.find(Query((("name", absent),))) == []


async def test_ids_are_never_handed_out_twice(heroes: SQLRows) -> None:
    _first, highest = await heroes.create_many([hero("a"), hero("b")])
    await heroes.delete(highest["id"])
    again = await create(heroes, hero("c"))
    assert again["id"] > highest["id"]
    assert again.version > highest.version
