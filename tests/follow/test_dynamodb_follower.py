"""The follower on DynamoDB Streams (moto's server, which has them): writes made beside
twotier — another service's PutItem, UpdateItem, DeleteItem, knowing nothing of twotier's
version or index attributes — reach the cache, and the follower gives them the version and
index attributes twotier's own writes would have (as SQL's triggers do)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import SERVER_URLS, database_url, dynamodb_endpoint, redis_namespace, require
from tests.follow.test_follower import made_anew
from tests.heroes import hero
from twotier.bootstrap import build_service
from twotier.config import Settings
from twotier.follow.follower import Follower
from twotier.follow.sources import change_log_for
from twotier.policy import Outcome
from twotier.service import Service

PATIENCE = 30.0


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    require("redis")
    settings = Settings(
        database_url=database_url("dynamodb", tmp_path),
        cache_url=SERVER_URLS["redis"],
        cache_namespace=redis_namespace(),
        dynamodb_index_lag=0.0,
    )
    async with made_anew(build_service(settings)) as made:
        yield made


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not await check():
        assert time.monotonic() < deadline, f"not within {PATIENCE} s: {what}"
        await asyncio.sleep(0.05)


def another_service() -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=dynamodb_endpoint(),
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


async def test_writes_beside_twotier_reach_the_cache_through_the_stream(service: Service) -> None:
    heroes = service.resource("heroes")
    table = heroes.rows.table  # type: ignore[attr-defined]
    stop = asyncio.Event()
    follower = Follower(service, change_log_for(service, "unused"), lease=2.0)
    running = asyncio.create_task(follower.run(stop))
    try:

        async def following() -> bool:
            return follower.following

        await eventually(following, "the follower follows")
        made = await heroes.create(hero("Ann", xp=10))
        key = made["id"]
        assert (await heroes.read(key)).outcome is Outcome.HIT
        assert b"Ann" in ((await heroes.lookup("xp", [10])).body or b"")
        other = another_service()
        # An update that knows nothing of twotier's version nor of its index attribute.
        other.update_item(
            TableName=table,
            Key={"id": {"N": str(key)}},
            UpdateExpression="SET #n = :n, xp = :xp",
            ExpressionAttributeNames={"#n": "name"},
            ExpressionAttributeValues={":n": {"S": "Bea"}, ":xp": {"N": "11"}},
        )

        async def updated() -> bool:
            body = (await heroes.read(key)).body or b""
            return b'"Bea"' in body

        async def moved() -> bool:
            old = (await heroes.lookup("xp", [10])).body
            new = (await heroes.lookup("xp", [11])).body or b""
            return old == b"[]" and b'"Bea"' in new

        await eventually(updated, "the plain update reaches the cache")
        await eventually(moved, "the lookups follow the row (index attribute repaired)")
        stored = other.get_item(TableName=table, Key={"id": {"N": str(key)}})["Item"]
        assert int(stored["version"]["N"]) == made.version + 1  # the follower's next version
        # A new item made without twotier's attributes, then a deletion.
        other.put_item(
            TableName=table,
            Item={
                "id": {"N": str(key + 50)},
                "name": {"S": "Cy"},
                "hero": {"S": "h"},
                "power": {"S": "p"},
                "xp": {"N": "12"},
                "color": {"S": "c"},
            },
        )

        async def inserted() -> bool:
            return b'"Cy"' in ((await heroes.read(key + 50)).body or b"")

        await eventually(inserted, "a plain put reaches the cache")
        other.delete_item(TableName=table, Key={"id": {"N": str(key)}})

        async def deleted() -> bool:
            return (await heroes.read(key)).body is None

        await eventually(deleted, "a plain delete leaves a tombstone")
    finally:
        stop.set()
        await asyncio.wait_for(running, PATIENCE)
