"""The store contract: SQLite, MariaDB, PostgreSQL and DynamoDB behave the same, for real.

Where DynamoDB differs by design, the test says so: pages without a lookup field among
their filters come in the table's order, not by key (docs/dynamodb.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import inspect, make_url

from tests.conftest import DECLARED, database_url, open_store
from tests.heroes import UINT_MAX, create, create_each, hero
from twotier.errors import DuplicateKey, StoreRefused
from twotier.resources import load_resources
from twotier.store.base import Query, Rows
from twotier.store.dynamo import DynamoStore
from twotier.telemetry import DATABASE_QUERY_DURATION


@pytest.fixture
def heroes(store: Any) -> Rows:
    return store.rows("heroes")  # type: ignore[no-any-return]


def by_key(store_kind: str) -> bool:
    """Does this store list rows by key (without a lookup filter)?"""
    return store_kind not in ("dynamodb", "dynalite")


def needs_transactions(store_kind: str) -> None:
    if store_kind == "dynalite":
        pytest.skip("dynalite has no TransactWriteItems: batches are tested on moto")


async def test_schema_is_idempotent_and_has_the_seed_shape(store: Any) -> None:
    await store.init_schema()
    await store.init_schema()
    if isinstance(store, DynamoStore):
        table = (await store.client.call("describe_table", TableName=store.rows("heroes").table))[
            "Table"
        ]
        assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        [index] = table["GlobalSecondaryIndexes"]
        assert index["IndexName"] == "by_xp"
        assert [k["AttributeName"] for k in index["KeySchema"]] == ["_by_xp", "id"]
        return

    def columns(sync_conn: object) -> tuple[list[str], list[list[str]]]:
        inspector = inspect(sync_conn)
        cols = [c["name"] for c in inspector.get_columns("superheroes")]
        indexes = [list(i["column_names"]) for i in inspector.get_indexes("superheroes")]
        return cols, indexes

    async with store.engine.connect() as conn:
        cols, indexes = await conn.run_sync(columns)
    assert cols == ["id", "name", "hero", "power", "xp", "color", "version"]
    assert ["xp", "id"] in indexes


async def test_create_then_get(heroes: Rows) -> None:
    before = time.time_ns() // 1000
    created = await create(heroes, hero())
    assert created["id"] >= 1
    assert created.version >= before  # born from the clock, in microseconds
    assert await heroes.get(created["id"]) == created
    assert await heroes.get(created["id"] + 1000) is None


async def test_create_many_keeps_order_and_is_one_transaction(
    heroes: Rows, store_kind: str
) -> None:
    needs_transactions(store_kind)
    made = await heroes.create_many([hero(f"h{i}", xp=i) for i in range(50)])
    assert [r["name"] for r in made] == [f"h{i}" for i in range(50)]
    assert len({r["id"] for r in made}) == 50
    for record in made[::10]:
        assert await heroes.get(record["id"]) == record

    # A row the database refuses (xp out of range, past validation) fails the whole batch.
    bad = hero("bad") | {"xp": -1 if by_key(store_kind) else 10**130}  # past validation
    with pytest.raises(Exception):  # noqa: B017, PT011 - each dialect names its own error
        await heroes.create_many([hero("ok1"), bad, hero("ok2")])
    assert await heroes.count() == 50


async def test_update_bumps_version_and_returns_before_and_after(heroes: Rows) -> None:
    created = await create(heroes, hero(xp=5))
    result = await heroes.update(created["id"], {"xp": 6, "name": "Bea"})
    assert result is not None
    before, after = result
    assert before == created
    assert (after["xp"], after["name"], after.version) == (6, "Bea", created.version + 1)
    assert await heroes.get(created["id"]) == after
    assert await heroes.update(created["id"] + 1000, {"xp": 1}) is None


async def test_delete_returns_the_row_it_removed(heroes: Rows) -> None:
    created = await create(heroes, hero())
    assert await heroes.delete(created["id"]) == created
    assert await heroes.get(created["id"]) is None
    assert await heroes.delete(created["id"]) is None


async def test_find_filters_orders_by_id_and_pages(heroes: Rows, store_kind: str) -> None:
    made = await create_each(
        heroes, [hero(f"n{i}", xp=i % 3, color="red" if i % 2 else "blue") for i in range(12)]
    )
    xp1 = [r for r in made if r["xp"] == 1]
    assert await heroes.find(Query((("xp", 1),), limit=100)) == xp1
    assert await heroes.find(Query((("xp", 1), ("color", "red")))) == [
        r for r in xp1 if r["color"] == "red"
    ]
    first = await heroes.find(Query(limit=5))
    second = await heroes.find(Query(after=first[-1]["id"], limit=5))
    rest = await heroes.find(Query(after=second[-1]["id"], limit=5))
    if by_key(store_kind):
        assert first + second == made[:10]
    assert sorted(first + second + rest, key=lambda r: r.key) == made  # each row once
    assert await heroes.find(Query((("name", "nobody"),))) == []


async def test_text_is_stored_exactly(heroes: Rows) -> None:
    tricky = [
        "Robert'); DROP TABLE",
        "🦸\u200d♀️ héroïne ñ",
        "a" * 20,
        "x' OR '1'='1",
        'back\\slash "q"',
        "%_ wildcards",
        "",
    ]
    made = await create_each(heroes, [hero(name=text, xp=UINT_MAX) for text in tricky])
    for record, text in zip(made, tricky, strict=True):
        stored = await heroes.get(record["id"])
        assert stored is not None
        assert (stored["name"], stored["xp"]) == (text, UINT_MAX)
    assert [r["name"] for r in await heroes.find(Query((("name", "%_ wildcards"),)))] == [
        "%_ wildcards"
    ]


async def test_concurrent_updates_lose_nothing(heroes: Rows) -> None:
    created = await create(heroes, hero(xp=0))
    results = await asyncio.gather(*(heroes.update(created["id"], {"xp": i}) for i in range(1, 21)))
    versions = sorted(r[1].version - created.version for r in results if r is not None)
    assert versions == list(range(1, 21))  # every write saw the one before it
    final = await heroes.get(created["id"])
    assert final is not None
    assert final.version == created.version + 20


async def test_concurrent_replaces_and_deletes_lose_nothing(heroes: Rows) -> None:
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


async def test_count_and_ping(store: Any) -> None:
    await store.ping()
    assert await store.rows("heroes").count() == 0
    await create_each(store.rows("heroes"), [hero(f"c{i}") for i in range(3)])
    assert await store.rows("heroes").count() == 3


async def test_schema_creation_tolerates_concurrent_creators(
    store: Any, store_kind: str, tmp_path: object
) -> None:
    await store.drop_schema()
    others = [open_store(database_url(store_kind, tmp_path)) for _ in range(6)]
    try:
        await asyncio.gather(*(other.init_schema() for other in others))
    finally:
        for other in others:
            await other.close()
    assert await store.rows("heroes").count() == 0


SPELLINGS = ["Zoë", "zoë", "ZOË", "Zoe", "zoe", "Zoë ", " Zoë", "Zoë\u0301", "Straße", "STRASSE"]


async def test_filters_match_exactly_on_every_store(heroes: Rows) -> None:
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


async def test_ids_are_never_handed_out_twice(heroes: Rows) -> None:
    _first, highest = await create_each(heroes, [hero("a"), hero("b")])
    await heroes.delete(highest["id"])
    again = await create(heroes, hero("c"))
    assert again["id"] > highest["id"]
    assert again.version > highest.version


def database_calls() -> float:
    """Database round trips timed so far (one per statement outside a transaction)."""
    return sum(
        sample.value
        for metric in DATABASE_QUERY_DURATION.collect()
        for sample in metric.samples
        if sample.name.endswith("_count")
    )


async def test_concurrent_creates_each_get_their_own_row(heroes: Rows, store_kind: str) -> None:
    """POSTs in one turn of the event loop (on SQL, one multi-row INSERT): each gets its own
    key, version and row, as if alone."""
    before = database_calls()
    made = await asyncio.gather(*(create(heroes, hero(f"c{i}", xp=i)) for i in range(20)))
    calls = database_calls() - before
    assert [record["name"] for record in made] == [f"c{i}" for i in range(20)]
    assert len({record["id"] for record in made}) == 20
    assert len({record.version for record in made}) == 20
    for record in made:
        assert await heroes.get(record["id"]) == record
    if store_kind in ("sqlite", "postgres", "mysql"):  # MariaDB: INSERT … RETURNING
        assert calls <= 2, f"{calls} statements for 20 creates of one loop turn"


async def test_concurrent_updates_of_many_rows_read_them_together(
    heroes: Rows, store_kind: str
) -> None:
    """Updates in one turn of the event loop (on SQL, their reads one SELECT … IN; on
    PostgreSQL their compare-and-sets one statement too, on MariaDB one transaction):
    each row takes exactly its own change."""
    made = await create_each(heroes, [hero(f"u{i}", xp=i) for i in range(20)])
    before = database_calls()
    done = await asyncio.gather(
        *(heroes.update(record["id"], {"name": f"v{i}"}) for i, record in enumerate(made))
    )
    calls = database_calls() - before
    for i, (record, result) in enumerate(zip(made, done, strict=True)):
        assert result is not None
        assert result[1] == await heroes.get(record["id"])
        assert (result[1]["name"], result[1].version) == (f"v{i}", record.version + 1)
    if store_kind in ("postgres", "mysql"):  # the compare-and-sets together too
        assert calls <= 2, f"{calls} statements for 20 updates of one loop turn"
    elif store_kind == "sqlite":
        assert calls <= 21, f"{calls} statements for 20 updates: their reads were not shared"


async def test_concurrent_updates_of_a_few_rows_lose_nothing(heroes: Rows) -> None:
    """A few rows, each written by many updates at once: a loop turn's compare-and-sets go
    several rows together, and those that lose (a write of the same row went first) read
    again and try again. Each row takes every one of its writes, once."""
    made = await create_each(heroes, [hero(f"f{i}", xp=0) for i in range(3)])
    results = await asyncio.gather(
        *(heroes.update(record["id"], {"xp": n}) for n in range(1, 11) for record in made)
    )
    for record in made:
        after = [done[1] for done in results if done is not None and done[1].key == record.key]
        assert sorted(a.version - record.version for a in after) == list(range(1, 11))
        final = await heroes.get(record["id"])
        assert final is not None
        assert final.version == record.version + 10


async def test_compare_and_sets_that_lose_a_deadlock_are_made_one_by_one(
    heroes: Rows, store_kind: str, tmp_path: object
) -> None:
    """MariaDB: the compare-and-sets of a loop turn lock their rows in one transaction.
    One that another transaction deadlocks with (InnoDB undoes the lighter one: ours) is
    made again write by write once the other is done: no write fails for it."""
    if store_kind != "mysql":
        pytest.skip("the locking transaction of compare-and-sets is MySQL's and MariaDB's")
    import asyncmy

    first, second = await create_each(heroes, [hero("d1"), hero("d2")])
    url = make_url(database_url("mysql", tmp_path))
    other = await asyncmy.connect(
        host=url.host, port=url.port or 3306, user=url.username, password="", db=url.database
    )
    try:
        async with other.cursor() as cursor:
            await cursor.execute("BEGIN")
            await cursor.execute("UPDATE superheroes SET name = 'o' WHERE id = %s", (second["id"],))
            both = asyncio.gather(
                heroes.update(first["id"], {"xp": 1}), heroes.update(second["id"], {"xp": 2})
            )
            await asyncio.sleep(0.5)  # they hold the first row's lock, wait for the second's
            # ... which this one holds, and now it waits for the first: a deadlock, ours
            # the lighter transaction (it changed nothing yet), undone.
            await cursor.execute("UPDATE superheroes SET name = 'o' WHERE id = %s", (first["id"],))
            await asyncio.sleep(0.2)
            await cursor.execute("COMMIT")
        done = await both
    finally:
        other.close()
    assert [result[1]["xp"] for result in done if result is not None] == [1, 2]
    assert [(await heroes.get(r["id"]))["xp"] for r in (first, second)] == [1, 2]  # type: ignore[index]


async def test_a_refused_update_among_concurrent_ones_fails_alone(
    heroes: Rows, store_kind: str
) -> None:
    """A value the database will not keep fails its own update only: the others of its
    loop turn (on PostgreSQL, one statement with it at first) are made."""
    if not by_key(store_kind):
        pytest.skip("DynamoDB keeps any number: nothing to refuse")
    made = await create_each(heroes, [hero(f"r{i}", xp=i) for i in range(4)])
    results = await asyncio.gather(
        *(
            heroes.update(record["id"], {"xp": -1 if i == 2 else 50 + i})  # past validation
            for i, record in enumerate(made)
        ),
        return_exceptions=True,
    )
    assert isinstance(results[2], Exception)
    for i in (0, 1, 3):
        done = results[i]
        assert isinstance(done, tuple)
        assert done[1]["xp"] == 50 + i
        assert (await heroes.get(made[i]["id"])) == done[1]
    assert await heroes.get(made[2]["id"]) == made[2]


PRODUCT = {"name": "P", "category": "c", "price": 1.5, "stock": 1, "active": True}


@pytest.fixture
async def products(store_kind: str, tmp_path: object) -> AsyncIterator[Rows]:
    """The declared products (client-given keys), one of them made: sku ``taken``."""
    store: Any = open_store(database_url(store_kind, tmp_path), load_resources(DECLARED))
    await store.init_schema()
    made: Rows = store.rows("products")
    try:
        await made.create_many([PRODUCT | {"sku": "taken"}])
        yield made
    finally:
        await store.drop_schema()
        await store.close()


async def test_a_refused_row_among_concurrent_creates_fails_alone(
    products: Rows, store_kind: str
) -> None:
    """A taken key, or a value the database will not keep, fails its own create only: the
    others of its loop turn are made."""
    wanted = [PRODUCT | {"sku": sku} for sku in ("new1", "taken", "new2", "new3")]
    if by_key(store_kind):  # past validation: a stock the column cannot hold
        wanted.append(PRODUCT | {"sku": "huge", "stock": 10**30})
    results = await asyncio.gather(
        *(products.create_many([each]) for each in wanted), return_exceptions=True
    )
    assert isinstance(results[1], DuplicateKey)
    assert [r[0]["sku"] for r in results if isinstance(r, list)] == ["new1", "new2", "new3"]
    if by_key(store_kind):
        assert isinstance(results[4], Exception)
    assert await products.count() == 4


async def test_a_batch_with_a_taken_key_writes_nothing(products: Rows, store_kind: str) -> None:
    needs_transactions(store_kind)
    # Client-given keys: one taken key fails the whole batch, on every store (DynamoDB: one
    # TransactWriteItems, whose condition on that item cancels the others).
    with pytest.raises(DuplicateKey):
        await products.create_many([PRODUCT | {"sku": s} for s in ("new1", "taken", "new2")])
    assert await products.count() == 1
    with pytest.raises(DuplicateKey):  # a key twice in one batch
        await products.create_many([PRODUCT | {"sku": s} for s in ("twice", "twice")])
    assert await products.count() == 1


async def test_dynamodb_refuses_what_it_cannot_write_in_one_transaction(
    tmp_path: object,
) -> None:
    store: Any = open_store(database_url("dynamodb", tmp_path))
    await store.init_schema()
    heroes = store.rows("heroes")
    try:
        made = await heroes.create_many([hero(f"h{i}") for i in range(100)])  # the most
        assert len(made) == 100
        with pytest.raises(StoreRefused, match="at most 100 rows in one transaction"):
            await heroes.create_many([hero(f"h{i}") for i in range(101)])
        with pytest.raises(StoreRefused, match="beyond what DynamoDB stores"):
            await heroes.create_many([hero("big") | {"xp": 10**130}])
        with pytest.raises(StoreRefused, match="DynamoDB refused"):  # an item past 400 KB
            await heroes.create_many([hero("huge") | {"power": "p" * 500_000}])
        assert await heroes.count() == 100
    finally:
        await store.drop_schema()
        await store.close()
