"""The operators of a list on every SQL store: the same rows in the same order as the
meaning the docs give them, checked against that meaning computed here (text byte for byte
in UTF-8, nulls never compared, every order ended by the key), on rows made to catch a
collation's habits (case, accents, trailing spaces, LIKE's wildcards, characters past the
Basic Multilingual Plane). DynamoDB refuses such declarations (its own test below)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SQL_STORES, database_url, emptied, open_store
from twotier.errors import StoreRefused
from twotier.resources import Record, Resource, load_resources
from twotier.store.base import Condition, Query, Rows, prefix_bound

TRACKS = """
[resources.tracks]
table = "q_tracks"
ranges = ["name", "price", "released", "plays"]
sets = ["genre", "composer", "plays"]
prefixes = ["name", "composer"]

[resources.tracks.fields]
name     = { type = "string", max_length = 40 }
genre    = { type = "string", max_length = 20 }
composer = { type = "string", max_length = 40, nullable = true }
price    = { type = "decimal", precision = 6, scale = 2 }
released = { type = "date", nullable = true }
plays    = { type = "integer", minimum = 0 }
"""

NAMES = [
    "Ca", "ca", "Ça", "Ca%", "Ca_t", "Cab", "C", "Cz", "a b", "a", "ab ", "ab", "ab  ",
    "Ca\U0001f600", "\U0001f600", "Zoë", "zoe", "Ca\u00ff", "Ca\uffff", "CA",
]  # fmt: skip
GENRES = ["Rock", "rock", "Jazz", "Metal", "Blues"]
COMPOSERS = [None, "Bach", "bach", "Béla", "B%", "Ca"]


@pytest.fixture(params=SQL_STORES)
async def tracks(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rows]:
    declared = tmp_path / "tracks.toml"
    declared.write_text(TRACKS)
    resources = load_resources(str(declared))
    async with emptied(open_store(database_url(request.param, tmp_path), resources)) as store:
        rows: Rows = store.rows("tracks")
        rnd = random.Random(7)
        await rows.create_many(
            [
                {
                    "name": rnd.choice(NAMES),
                    "genre": rnd.choice(GENRES),
                    "composer": rnd.choice(COMPOSERS),
                    "price": Decimal(rnd.randint(0, 300)) / 100,
                    "released": rnd.choice([None, date(1999, 1, 1), date(2024, 5, 6)]),
                    "plays": rnd.randint(0, 9),
                }
                for _ in range(120)
            ]
        )
        yield rows


def _sortable(value: Any) -> Any:
    """A value as the docs compare it: text byte for byte in UTF-8."""
    return value.encode() if isinstance(value, str) else value


def _holds(condition: Condition, values: dict[str, Any]) -> bool:
    value = values[condition.field]
    if condition.op == "null":
        return (value is None) is condition.value
    if value is None:
        return False  # a null is never compared, nor one of a set
    if condition.op == "in":
        return value in condition.value
    if condition.op == "prefix":
        return str(value).startswith(condition.value)
    mine, theirs = _sortable(value), _sortable(condition.value)
    held: bool = {
        "gt": mine > theirs,
        "gte": mine >= theirs,
        "lt": mine < theirs,
        "lte": mine <= theirs,
    }[condition.op]
    return held


def expected(every: list[Record], query: Query, resource: Resource) -> list[Any]:
    """The keys a query finds, in its order, as the docs say."""
    found = [
        record
        for record in every
        if all(_holds(c, record.values) for c in query.conditions)
        and all(record.values[name] == value for name, value in query.filters)
    ]

    def order(record: Record) -> tuple[Any, ...]:
        return (*(_sortable(record.values[name]) for name in query.order), record.key)

    found.sort(key=order, reverse=query.descending)
    return [record.key for record in found]


async def every_page(rows: Rows, query: Query) -> list[Any]:
    """Every row a query finds, a few at a time, each page after the last row of the one
    before (its values of the order's fields, then its key)."""
    keys: list[Any] = []
    page = query.with_limit(7)
    while True:
        found = await rows.find(page)
        keys += [record.key for record in found]
        if len(found) < page.limit:
            return keys
        last = found[-1]
        if page.ordered:
            position = (*(last.values[name] for name in page.order), last.key)
            page = replace(page, position=position)
        else:
            page = replace(page, after=last.key)


QUERIES: list[Callable[[], Query]] = [
    lambda: Query(conditions=(Condition("name", "gte", "Ca"),), order=("name",)),
    lambda: Query(conditions=(Condition("name", "lt", "ab"),), order=("name",), descending=True),
    lambda: Query(conditions=(Condition("name", "prefix", "Ca"),), order=("name",)),
    lambda: Query(conditions=(Condition("name", "prefix", "ab"),), order=("name",)),
    lambda: Query(conditions=(Condition("name", "prefix", "Ca%"),), order=("name",)),
    lambda: Query(conditions=(Condition("name", "prefix", "Ca\uffff"),), order=("name",)),
    lambda: Query(conditions=(Condition("composer", "prefix", "B"),)),
    lambda: Query(conditions=(Condition("price", "gt", Decimal("1.5")),), order=("price",)),
    lambda: Query(
        conditions=(Condition("price", "gte", Decimal("0.5")), Condition("price", "lt", 2)),
        order=("price",),
        descending=True,
    ),
    lambda: Query(conditions=(Condition("released", "lte", date(2000, 1, 1)),)),
    lambda: Query(conditions=(Condition("released", "null", True),)),
    lambda: Query(conditions=(Condition("released", "null", False),), order=("plays",)),
    lambda: Query(conditions=(Condition("genre", "in", ("Rock", "Jazz")),)),
    lambda: Query(conditions=(Condition("composer", "in", ("Bach", "Ca")),), order=("name",)),
    lambda: Query(
        conditions=(Condition("plays", "in", (1, 2, 3)), Condition("genre", "in", ("rock",)))
    ),
    lambda: Query(conditions=(Condition("id", "gt", 40), Condition("id", "lte", 90))),
    lambda: Query(conditions=(Condition("id", "in", (3, 5, 8, 200)),)),
    lambda: Query(order=("plays",), descending=True),
    lambda: Query(descending=True),
    lambda: Query(conditions=(Condition("composer", "null", True),), order=("name",)),
]


@pytest.mark.parametrize("make", QUERIES, ids=range(len(QUERIES)))
async def test_each_operator_finds_what_the_docs_say(
    tracks: Rows, make: Callable[[], Query]
) -> None:
    query = make()
    every = await tracks.find(Query(limit=1000))
    assert len(every) == 120
    wanted = expected(every, query, tracks.resource)
    assert [r.key for r in await tracks.find(query.with_limit(1000))] == wanted
    assert await every_page(tracks, query) == wanted  # page by page, none twice or lost


def test_a_prefix_ends_below_the_next_text() -> None:
    assert prefix_bound("Ca") == "Cb"
    assert prefix_bound("C\U0010ffff") == "D"
    assert prefix_bound("\ud7ff") == "\ue000"  # past the surrogates
    assert prefix_bound("\U0010ffff") is None


async def test_dynamodb_refuses_what_it_cannot_serve(tmp_path: Path) -> None:
    declared = tmp_path / "tracks.toml"
    declared.write_text(TRACKS)
    with pytest.raises(StoreRefused, match=r"resources\.tracks\.ranges: DynamoDB serves"):
        open_store(database_url("dynamodb", tmp_path), load_resources(str(declared)))
