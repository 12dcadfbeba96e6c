"""DynamoDB's global secondary indexes are eventually consistent: an index may answer a
lookup from before a write for a while after it. The race, shown by an index that answers
from before the write (as a lagging one would): without a lag window the cache freezes the
old answer under the generation the write moved to, and serves it after the index caught
up; with one, the lagging answer is served but never stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tests.conftest import database_url, open_store
from tests.heroes import hero
from twotier.cache.memory import MemoryCache
from twotier.cache.resilient import ResilientCache
from twotier.policy import Outcome, ResourcePolicy, Tuning
from twotier.resources import Record
from twotier.store.dynamo_rows import DynamoRows


class LaggingIndex:
    """Makes a DynamoRows' index answer what it answered before ``freeze()`` until
    ``catch_up()``: the table itself stays current."""

    def __init__(self, rows: DynamoRows) -> None:
        self._query = rows._query_index
        self._frozen: dict[Any, list[Record]] | None = None
        rows._query_index = self._answer  # type: ignore[method-assign,assignment]

    async def freeze(self, field: str, values: list[Any]) -> None:
        self._frozen = {v: await self._query(field, v, (), None, None) for v in values}

    def catch_up(self) -> None:
        self._frozen = None

    async def _answer(self, field: str, value: Any, *args: Any) -> list[Record]:
        if self._frozen is not None:
            return list(self._frozen.get(value, []))
        return await self._query(field, value, *args)


@pytest.fixture
async def heroes(tmp_path: object) -> AsyncIterator[DynamoRows]:
    store: Any = open_store(database_url("dynamodb", tmp_path))
    await store.init_schema()
    try:
        yield store.rows("heroes")
    finally:
        await store.drop_schema()
        await store.close()


def names(body: bytes | None) -> list[str]:
    return [row["name"] for row in orjson.loads(body or b"[]")]


@pytest.mark.parametrize("lag", [0.0, 0.5], ids=["no-window", "window"])
async def test_a_lagging_index_is_never_frozen_into_the_cache(
    heroes: DynamoRows, lag: float
) -> None:
    heroes.lookup_lag = lag
    index = LaggingIndex(heroes)
    tuning = Tuning()
    policy = ResourcePolicy(
        heroes, ResilientCache(MemoryCache(), generation_ttl=tuning.generation_ttl), tuning
    )
    [ada] = await heroes.create_many([hero("Ada", xp=5)])
    assert names((await policy.lookup("xp", [5])).body) == ["Ada"]  # cached

    await index.freeze("xp", [5, 6])  # the index has not seen the write below yet
    await policy.update(ada.key, {"xp": 6})
    # Within the lag, the index answers from before the write: so does the API.
    assert names((await policy.lookup("xp", [5])).body) == ["Ada"]
    assert names((await policy.lookup("xp", [6])).body) == []

    index.catch_up()
    five, six = await policy.lookup("xp", [5]), await policy.lookup("xp", [6])
    if lag == 0.0:
        # The race: the lagging answers were stored under the write's generations, and
        # outlive the lag in the cache.
        assert (names(five.body), names(six.body)) == (["Ada"], [])
        assert (five.outcome, six.outcome) == (Outcome.HIT, Outcome.HIT)
        return
    # With the window: what the index answers now, not what it answered then.
    assert (names(five.body), names(six.body)) == ([], ["Ada"])
    await asyncio.sleep(lag)
    assert (await policy.lookup("xp", [6])).outcome is Outcome.MISS  # stored now
    again = await policy.lookup("xp", [6])
    assert (names(again.body), again.outcome) == (["Ada"], Outcome.HIT)
