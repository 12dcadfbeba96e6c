"""`db introspect` on DynamoDB (moto's server): a table another application made, keyed by a
partition and a sort key, its other attributes learned from its items; and a table twotier
made, read back as it was declared. What is written is served unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient

from tests.conftest import open_store
from twotier.api.app import create_app
from twotier.config import Settings
from twotier.resources import parse_resources
from twotier.resources.introspected import checked, declaration_text


def _url(endpoint: str, prefix: str = "app_") -> str:
    """Moto keeps its tables for the whole process: each test has a prefix of its own."""
    return f"dynamodb://?endpoint_url={endpoint}&region=us-east-1&table_prefix={prefix}"


def _client(endpoint: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def _songs(endpoint: str) -> None:
    """Another application's table: an artist's songs by number, and an index of its own."""
    client = _client(endpoint)
    client.create_table(
        TableName="app_songs",
        AttributeDefinitions=[
            {"AttributeName": "artist", "AttributeType": "S"},
            {"AttributeName": "number", "AttributeType": "N"},
            {"AttributeName": "genre", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "artist", "KeyType": "HASH"},
            {"AttributeName": "number", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "genre-index",
                "KeySchema": [{"AttributeName": "genre", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    items = [
        {
            "artist": {"S": "Ann"},
            "number": {"N": "1"},
            "title": {"S": "One"},
            "plays": {"N": "10"},
            "rating": {"N": "4.5"},
            "live": {"BOOL": True},
            "tags": {"SS": ["a", "b"]},
            "meta": {"M": {"k": {"S": "v"}}},
            "genre": {"S": "pop"},
        },
        {
            "artist": {"S": "Ann"},
            "number": {"N": "2"},
            "title": {"S": "Two"},
            "plays": {"N": "3"},
            "rating": {"N": "3"},
            "live": {"BOOL": False},
            "genre": {"S": "rock"},
            "note": {"NULL": True},
        },
    ]
    for item in items:
        client.put_item(TableName="app_songs", Item=item)


async def test_another_applications_table_is_declared_from_its_items(
    moto_endpoint: str, tmp_path: Path
) -> None:
    _songs(moto_endpoint)
    store: Any = open_store(_url(moto_endpoint), ())
    try:
        found = checked(await store.introspect())
    finally:
        await store.close()
    [songs] = found
    assert songs.settings is not None
    assert songs.settings["key"] == ["artist", "number"]
    assert songs.settings["fields"] == {
        "artist": {"type": "string", "max_length": 2048},
        "number": {"type": "integer"},
        "title": {"type": "string", "max_length": 1024},
        "plays": {"type": "integer"},
        "rating": {"type": "number"},
        "live": {"type": "boolean"},
        "genre": {"type": "string", "max_length": 1024},
    }
    assert "lookups" not in songs.settings  # its own index has none of twotier's attributes
    said = " ".join(songs.columns_left_out)
    assert "'tags' holds a set of strings" in said
    assert "'meta' holds a map" in said
    assert "'note' holds only nulls" in said
    assert "index 'genre-index': another application's" in said
    text = declaration_text(found, "dynamodb")
    declared = tmp_path / "songs.toml"
    declared.write_text(text)
    parse_resources(text, "songs.toml")
    settings = Settings(
        database_url=_url(moto_endpoint),
        cache_url="memory://",
        resources=str(declared),
        require_key_for_writes=False,
    )
    with TestClient(create_app(settings)) as client:
        answer = client.get("/songs/Ann,2")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "artist": "Ann",
            "number": 2,
            "title": "Two",
            "plays": 3,
            "rating": 3.0,
            "live": False,
            "genre": "rock",
        }
        by_artist = client.get("/songs", params={"artist": "Ann"}).json()["items"]
        assert [song["number"] for song in by_artist] == [1, 2]


async def test_a_table_twotier_made_is_read_back_as_declared(moto_endpoint: str) -> None:
    heroes = """
    [resources.heroes]
    table = "superheroes"
    lookups = ["xp"]
    [resources.heroes.fields]
    name = { type = "string", max_length = 20 }
    xp = { type = "integer", minimum = 0 }
    """
    store: Any = open_store(_url(moto_endpoint, "made_"), parse_resources(heroes, "heroes.toml"))
    try:
        await store.init_schema()
        await store.rows("heroes").create_many([{"name": "Ann", "xp": 5}])
        tables = checked(await store.introspect())
    finally:
        await store.close()
    assert [item.table for item in tables] == ["superheroes"], tables
    [found] = tables
    assert found.settings is not None
    assert found.settings["id"] == "id"  # its ids are twotier's to hand out
    assert found.settings["lookups"] == ["xp"]
    assert set(found.settings["fields"]) == {"name", "xp"}


async def test_a_table_named_that_is_not_there_is_refused(moto_endpoint: str) -> None:
    from twotier.errors import StoreRefused

    store: Any = open_store(_url(moto_endpoint, "none_"), ())
    try:
        with pytest.raises(StoreRefused, match="no table 'nope' here"):
            await store.introspect(["nope"])
    finally:
        await store.close()
