"""Resources keyed by several fields (a join table's two foreign keys), on every SQL store:
one path form for the key (``/plays/3,1027``), reads, writes, conditional writes, deletes,
lookups on each part, pages in key order, the writes of one loop turn made together, bulk
loads, the batch protocol and the OpenAPI document; on DynamoDB, its partition and sort key.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import SQL_STORES, database_url, open_store
from twotier.api.app import create_app
from twotier.config import Settings
from twotier.errors import (
    DuplicateKey,
    ResourceError,
    SchemaMismatch,
    StoreRefused,
    VersionMismatch,
)
from twotier.resources import load_resources, parse_resources
from twotier.store.base import Query, Rows

DECLARED = """
[resources.plays]
table = "playlist_plays"
key = ["playlist_id", "track_id"]
lookups = ["track_id"]
[resources.plays.fields]
playlist_id = { type = "integer", minimum = 1 }
track_id = { type = "integer", minimum = 1 }
place = { type = "integer", nullable = true }

[resources.regions]
table = "country_regions"
key = ["country", "code"]
[resources.regions.fields]
country = { type = "string", max_length = 2 }
code = { type = "string", max_length = 10 }
name = { type = "string", max_length = 50 }
"""


@pytest.fixture
def declared(tmp_path: Path) -> str:
    path = tmp_path / "composite.toml"
    path.write_text(DECLARED)
    return str(path)


@pytest.fixture(params=[*SQL_STORES, "dynamodb"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(store_kind: str, tmp_path: Path, declared: str) -> AsyncIterator[Any]:
    opened: Any = open_store(database_url(store_kind, tmp_path), load_resources(declared))
    await opened.init_schema()
    await opened.drop_schema()
    await opened.init_schema()
    try:
        yield opened
    finally:
        await opened.drop_schema()
        await opened.close()


def _play(playlist: int, track: int, place: int | None = None) -> dict[str, Any]:
    return {"playlist_id": playlist, "track_id": track, "place": place}


async def test_each_row_is_named_by_all_its_key_fields(store: Any) -> None:
    plays: Rows = store.rows("plays")
    made = await plays.create_many([_play(1, 1, 1), _play(1, 2, 2), _play(2, 1, 1)])
    assert [record.key for record in made] == ["1,1", "1,2", "2,1"]
    one = await plays.get("1,2")
    assert one is not None
    assert one.key == "1,2"
    assert one.values == _play(1, 2, 2)
    assert await plays.get("2,2") is None
    found = await plays.get_many(["2,1", "1,1", "9,9", "2,1"])
    assert sorted(found) == ["1,1", "2,1"]
    assert found["2,1"].values == _play(2, 1, 1)
    with pytest.raises(DuplicateKey):
        await plays.create_many([_play(1, 2)])


async def test_a_lookup_on_either_part_of_the_key(store: Any) -> None:
    plays: Rows = store.rows("plays")
    await plays.create_many([_play(1, 1), _play(1, 2), _play(2, 1), _play(3, 2)])
    by_track = await plays.lookup("track_id", [1, 2, 5])
    assert [record.key for record in by_track[1]] == ["1,1", "2,1"]
    assert [record.key for record in by_track[2]] == ["1,2", "3,2"]
    assert by_track[5] == []
    first = await plays.find(Query(filters=(("playlist_id", 1),), limit=10))
    assert [record.key for record in first] == ["1,1", "1,2"]


async def test_pages_follow_the_key_fields_in_turn(store: Any) -> None:
    plays: Rows = store.rows("plays")
    keys = [(p, t) for p in (1, 2, 10) for t in (3, 1, 20)]
    await plays.create_many([_play(p, t) for p, t in keys])
    seen: list[Any] = []
    after = None
    while True:
        page = await plays.find(Query(after=after, limit=4))
        seen += [record.key for record in page]
        if len(page) < 4:
            break
        after = page[-1].key
    # Numbers compare as numbers, part by part: 2 before 10, and 3 before 20.
    assert seen == [f"{p},{t}" for p, t in sorted(keys)]


async def test_writes_name_the_row_by_its_whole_key(store: Any) -> None:
    plays: Rows = store.rows("plays")
    made = await plays.create_many([_play(1, 1, 1), _play(1, 2, 2)])
    changed = await plays.update("1,2", {"place": 7})
    assert changed is not None
    before, after = changed
    assert (before.values["place"], after.values["place"]) == (2, 7)
    assert after.version == before.version + 1
    assert (await plays.get("1,1")).values["place"] == 1  # type: ignore[union-attr]
    with pytest.raises(VersionMismatch):
        await plays.update("1,1", {"place": 5}, expected=frozenset({made[0].version + 9}))
    created, record = await plays.put("4,4", {"place": 4})
    assert created is None
    assert record.values == _play(4, 4, 4)
    replaced, record = await plays.put("4,4", {"place": None})
    assert replaced is not None
    assert record.values == _play(4, 4, None)
    gone = await plays.delete("1,1", expected=frozenset({made[0].version}))
    assert gone is not None
    assert await plays.get("1,1") is None
    assert await plays.get("1,2") is not None
    assert await plays.delete("1,1") is None


async def test_the_writes_of_one_loop_turn_go_together(store: Any) -> None:
    """Concurrent writes of different rows share statements (a CASE or a FROM VALUES keyed
    by both fields): each lands on its own row only."""
    plays: Rows = store.rows("plays")
    await plays.create_many([_play(p, t, 0) for p in (1, 2) for t in (1, 2, 3)])
    keys = [f"{p},{t}" for p in (1, 2) for t in (1, 2, 3)]
    done = await asyncio.gather(
        *(plays.update(key, {"place": n}) for n, key in enumerate(keys, start=1))
    )
    assert all(result is not None for result in done)
    rows = await plays.get_many(keys)
    assert {key: rows[key].values["place"] for key in keys} == {
        key: n for n, key in enumerate(keys, start=1)
    }
    created = await asyncio.gather(*(plays.create_many([_play(9, t)]) for t in range(1, 6)))
    assert [made[0].key for made in created] == [f"9,{t}" for t in range(1, 6)]


async def test_text_parts_compare_exactly(store: Any) -> None:
    """MySQL's collations take ``a`` for ``A``: each part of the key is compared byte for
    byte, as a key of one field is."""
    regions: Rows = store.rows("regions")
    await regions.create_many(
        [
            {"country": "de", "code": "by", "name": "Bayern"},
            {"country": "de", "code": "BY", "name": "upper"},
            {"country": "at", "code": "by", "name": "other"},
        ]
    )
    assert (await regions.get("de,BY")).values["name"] == "upper"  # type: ignore[union-attr]
    assert (await regions.get("de,by")).values["name"] == "Bayern"  # type: ignore[union-attr]
    assert await regions.get("DE,by") is None
    found = await regions.get_many(["de,by", "at,by"])
    assert sorted(found) == ["at,by", "de,by"]


async def test_a_bulk_load_updates_rows_by_their_whole_key(store: Any) -> None:
    plays: Rows = store.rows("plays")
    await plays.create_many([_play(1, 1, 1)])
    lines = [((1, 1, 5), "line 2"), ((1, 2, 6), "line 3"), ((2, 1, None), "line 4")]
    assert await plays.bulk_load(lines, replace=False, keep=lambda: True) == 3
    found = await plays.get_many(["1,1", "1,2", "2,1"])
    assert {key: record.values["place"] for key, record in found.items()} == {
        "1,1": 5,
        "1,2": 6,
        "2,1": None,
    }


def test_a_key_part_is_checked_where_it_is_declared() -> None:
    def declare(key: str, fields: str) -> None:
        parse_resources(f"[resources.r]\nkey = {key}\n[resources.r.fields]\n{fields}\n", "test")

    with pytest.raises(ResourceError, match=r"key: names a field twice"):
        declare('["a", "a"]', 'a = "integer"')
    with pytest.raises(ResourceError, match=r"'c' is not one of its fields"):
        declare('["a", "c"]', 'a = "integer"\nb = "integer"')
    with pytest.raises(ResourceError, match=r"fields.b: a key can be neither nullable"):
        declare('["a", "b"]', 'a = "integer"\nb = { type = "integer", nullable = true }')
    with pytest.raises(ResourceError, match=r"fields.b: a key is a string, integer or uuid"):
        declare('["a", "b"]', 'a = "integer"\nb = "boolean"')
    with pytest.raises(ResourceError, match=r"must be a field's name, or a list"):
        declare("[]", 'a = "integer"')


def test_dynamodb_takes_a_partition_and_a_sort_key(moto_endpoint: str) -> None:
    """Two fields are DynamoDB's partition and sort key; a third has nowhere to go."""
    url = f"dynamodb://?endpoint_url={moto_endpoint}&region=us-east-1&table_prefix=c_"
    three = DECLARED.replace(
        'key = ["playlist_id", "track_id"]', 'key = ["playlist_id", "track_id", "place"]'
    ).replace('place = { type = "integer", nullable = true }', 'place = "integer"')
    with pytest.raises(StoreRefused, match=r"resources.plays: a DynamoDB table's key is a"):
        open_store(url, parse_resources(three, "three.toml"))


async def test_dynamodb_refuses_a_table_keyed_otherwise(moto_endpoint: str) -> None:
    """A table that exists keyed by one attribute is not taken for a composite key's."""
    url = f"dynamodb://?endpoint_url={moto_endpoint}&region=us-east-1&table_prefix=o_"
    single = DECLARED.replace('key = ["playlist_id", "track_id"]', 'key = "playlist_id"')
    made: Any = open_store(url, parse_resources(single, "single.toml"))
    await made.init_schema()
    await made.close()
    store: Any = open_store(url, parse_resources(DECLARED, "composite.toml"))
    try:
        with pytest.raises(SchemaMismatch, match=r"o_playlist_plays is keyed by playlist_id"):
            await store.init_schema()
    finally:
        await store.close()


def test_over_http_the_key_is_one_path_segment(tmp_path: Path, declared: str) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/composite.db",
        cache_url="memory://",
        resources=declared,
        require_key_for_writes=False,
        follow="off",
    )
    with TestClient(create_app(settings)) as client:
        put = client.put("/plays/3,1027", json={"place": 1})
        assert put.status_code == 201, put.text
        assert put.headers["location"] == "/plays/3,1027"
        assert put.json() == {"playlist_id": 3, "track_id": 1027, "place": 1}
        post = client.post("/plays", json={"playlist_id": 3, "track_id": 5})
        assert post.status_code == 201, post.text
        assert post.headers["location"] == "/plays/3,5"
        read = client.get("/plays/3,1027")
        assert read.json()["place"] == 1
        assert client.get("/plays/3,1027").headers["x-cache"] == "HIT"
        assert client.get("/plays/03,1027").json() == read.json()  # one key, one entry
        etag = read.headers["etag"]
        stale = client.patch("/plays/3,1027", json={"place": 2}, headers={"if-match": '"1"'})
        assert stale.status_code == 412
        patched = client.patch("/plays/3,1027", json={"place": 2}, headers={"if-match": etag})
        assert patched.status_code == 200, patched.text
        assert client.get("/plays/3,1027").json()["place"] == 2
        moved = client.patch("/plays/3,1027", json={"track_id": 8})
        assert moved.status_code == 422
        assert moved.json()["detail"][0]["loc"] == ["body", "track_id"]
        assert client.put("/plays/3,1027", json={"playlist_id": 3, "place": 4}).status_code == 200
        for bad, says in (
            ("3", "must be 2 values separated by ','"),
            ("3,1027,1", "must be 2 values separated by ','"),
            ("3,x", "track_id: must be a whole number"),
            ("0,1", "playlist_id: "),
        ):
            refused = client.get(f"/plays/{bad}")
            assert refused.status_code == 422, (bad, refused.text)
            assert refused.json()["detail"][0]["loc"] == ["path", "play_key"]
            assert says in refused.text, (bad, refused.text)
        page = client.get("/plays", params={"limit": 1})
        assert page.json()["next_after"] == "3,5"
        rest = client.get("/plays", params={"after": "3,5"}).json()
        assert [item["track_id"] for item in rest["items"]] == [1027]
        assert client.get("/plays", params={"after": "3"}).status_code == 422
        by_track = client.get("/plays", params={"track_id": 5}).json()["items"]
        assert by_track == [{"playlist_id": 3, "track_id": 5, "place": None}]
        assert client.delete("/plays/3,5").status_code == 204
        assert client.get("/plays/3,5").status_code == 404
        document = client.get("/openapi.json").json()
        parameter = document["paths"]["/plays/{play_key}"]["get"]["parameters"][0]
        assert parameter["name"] == "play_key"
        assert "playlist_id and track_id" in parameter["description"]
        assert parameter["schema"]["type"] == "string"


def test_the_batch_protocol_reads_by_the_key_text(tmp_path: Path, declared: str) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/composite.db",
        cache_url="memory://",
        resources=declared,
        require_key_for_writes=False,
        follow="off",
    )
    with TestClient(create_app(settings)) as client:
        write = {
            "USE_CACHE": True,
            "REQUEST": "write",
            "RESOURCE": "plays",
            "SQLS": [_play(1, 2, 3), _play(1, 4, None)],
        }
        assert client.post("/batch", json=write).status_code == 200
        read = {
            "USE_CACHE": True,
            "REQUEST": "read",
            "RESOURCE": "plays",
            "KEY": "playlist_id,track_id",
            "SQLS": ["1,4", "1,2", "7,7"],
        }
        answered = client.post("/batch", json=read)
        assert answered.status_code == 200, answered.text
        assert sorted(row["track_id"] for row in answered.json()["body"]) == [2, 4]
        by_track = client.post("/batch", json=read | {"KEY": "track_id", "SQLS": [4]})
        assert [row["playlist_id"] for row in by_track.json()["body"]] == [1]
        bad = client.post("/batch", json=read | {"SQLS": ["1"]})
        assert bad.status_code == 400
        assert "must be 2 values" in bad.text
