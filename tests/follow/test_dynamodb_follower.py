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


JOINED = """
[resources.plays]
table = "follow_plays"
key = ["playlist_id", "track_id"]
lookups = ["track_id"]
[resources.plays.fields]
playlist_id = { type = "integer", minimum = 1 }
track_id = { type = "integer", minimum = 1 }
place = { type = "integer", nullable = true }
"""


async def test_a_composite_keys_items_written_beside_twotier_reach_the_cache(
    tmp_path: Path,
) -> None:
    """A table keyed by a partition and a sort key: an item updated and one deleted by
    another client are named by both, in the cache and in the lookup on the sort key."""
    require("redis")
    declared = tmp_path / "joined.toml"
    declared.write_text(JOINED)
    settings = Settings(
        database_url=database_url("dynamodb", tmp_path),
        cache_url=SERVER_URLS["redis"],
        cache_namespace=redis_namespace(),
        dynamodb_index_lag=0.0,
        resources=str(declared),
    )
    async with made_anew(build_service(settings)) as service:
        plays = service.resource("plays")
        table = plays.rows.table  # type: ignore[attr-defined]
        stop = asyncio.Event()
        follower = Follower(service, change_log_for(service, "unused"), lease=2.0)
        running = asyncio.create_task(follower.run(stop))
        try:

            async def following() -> bool:
                return follower.following

            await eventually(following, "the follower follows")
            await plays.create({"playlist_id": 3, "track_id": 7, "place": 1})
            await plays.create({"playlist_id": 4, "track_id": 7, "place": 2})
            assert (await plays.read("3,7")).outcome is Outcome.HIT
            other = another_service()
            other.update_item(
                TableName=table,
                Key={"playlist_id": {"N": "3"}, "track_id": {"N": "7"}},
                UpdateExpression="SET place = :p",
                ExpressionAttributeValues={":p": {"N": "9"}},
            )
            other.delete_item(
                TableName=table, Key={"playlist_id": {"N": "4"}, "track_id": {"N": "7"}}
            )

            async def applied() -> bool:
                kept = (await plays.read("3,7")).body or b""
                gone = (await plays.read("4,7")).body
                by_track = (await plays.lookup("track_id", [7])).body or b""
                return b'"place":9' in kept and gone is None and b'"playlist_id":4' not in by_track

            await eventually(applied, "the other client's update and delete reach the cache")
        finally:
            stop.set()
            await asyncio.wait_for(running, PATIENCE)
