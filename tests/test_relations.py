"""Relations from foreign keys: nested collections (``/artists/1/albums``) and embedding
(``/albums/1?embed=artist,tracks``), composed from each part's own cached entry, so an
embedded answer is never staler than its parts read alone — whatever wrote them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from tests.conftest import SQL_STORES, cache_url, database_url, drop_table, forget_namespace
from twotier.api.app import create_app
from twotier.config import Settings
from twotier.errors import ResourceError
from twotier.resources import parse_resources
from twotier.store.sql import SQLStore

DECLARED = """
[resources.artists]
table = "rel_artists"
[resources.artists.fields]
name = { type = "string", max_length = 50 }

[resources.albums]
table = "rel_albums"
[resources.albums.fields]
title = { type = "string", max_length = 50 }
artist_id = { type = "integer", minimum = 1 }
[resources.albums.relations]
artist = { resource = "artists", field = "artist_id" }

[resources.tracks]
table = "rel_tracks"
[resources.tracks.fields]
name = { type = "string", max_length = 50 }
album_id = { type = "integer", minimum = 1, nullable = true }
[resources.tracks.relations]
album = { resource = "albums", field = "album_id" }
"""


@pytest.fixture(params=[*SQL_STORES, "dynamodb"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    kind = str(request.param)
    declared = tmp_path / "related.toml"
    declared.write_text(DECLARED)
    url = database_url(kind, tmp_path)
    namespace = f"twotier-test-{uuid.uuid4().hex[:12]}"
    settings = Settings(
        database_url=url,
        cache_url=cache_url("redis") if kind != "sqlite" else "memory://",
        cache_namespace=namespace,
        resources=str(declared),
        require_key_for_writes=False,
        follow="off",
        # moto's indexes answer at once: no lag to keep out of the cache.
        dynamodb_index_lag=0.0,
    )
    try:
        with TestClient(create_app(settings)) as made:
            yield made, url
    finally:
        if kind != "dynamodb":
            drop_table(url, str(declared))
        if kind != "sqlite":
            forget_namespace(cache_url("redis"), namespace)


def _made(client: TestClient, path: str, body: dict[str, Any]) -> int:
    answer = client.post(path, json=body)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def test_a_nested_collection_is_the_lookup_of_the_rows_that_refer(
    client: tuple[TestClient, str],
) -> None:
    http, _ = client
    ann = _made(http, "/artists", {"name": "Ann"})
    bob = _made(http, "/artists", {"name": "Bob"})
    first = _made(http, "/albums", {"title": "One", "artist_id": ann})
    second = _made(http, "/albums", {"title": "Two", "artist_id": ann})
    _made(http, "/albums", {"title": "Other", "artist_id": bob})
    nested = http.get(f"/artists/{ann}/albums")
    assert nested.status_code == 200, nested.text
    assert [row["id"] for row in nested.json()["items"]] == [first, second]
    assert nested.json() == http.get("/albums", params={"artist_id": ann}).json()
    assert http.get(f"/artists/{ann}/albums").headers["x-cache"] == "HIT"
    page = http.get(f"/artists/{ann}/albums", params={"limit": 1}).json()
    assert page["next_after"] == first
    rest = http.get(f"/artists/{ann}/albums", params={"after": first}).json()
    assert [row["id"] for row in rest["items"]] == [second]
    missing = http.get("/artists/999/albums")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "artist 999 not found"}
    assert http.get(f"/artists/{ann}/tracks").status_code == 404  # no such relation
    assert http.get(f"/albums/{first}/artist").status_code == 404  # to one: embed it
    refused = http.get(f"/artists/{ann}/albums", params={"title": "One"})
    assert refused.status_code == 422


def test_an_embedded_answer_is_never_staler_than_its_parts(
    client: tuple[TestClient, str],
) -> None:
    http, url = client
    ann = _made(http, "/artists", {"name": "Ann"})
    album = _made(http, "/albums", {"title": "One", "artist_id": ann})
    track = _made(http, "/tracks", {"name": "a", "album_id": album})
    loose = _made(http, "/tracks", {"name": "b", "album_id": None})

    def embedded() -> dict[str, Any]:
        answer = http.get(f"/albums/{album}", params={"embed": "artist,tracks"})
        assert answer.status_code == 200, answer.text
        assert "etag" not in answer.headers  # no one row's version
        return dict(answer.json())

    first = embedded()
    assert first == {
        "id": album,
        "title": "One",
        "artist_id": ann,
        "artist": {"id": ann, "name": "Ann"},
        "tracks": {"items": [{"id": track, "name": "a", "album_id": album}], "next_after": None},
    }
    again = http.get(f"/albums/{album}", params={"embed": "artist,tracks"})
    assert again.headers["x-cache"] == "HIT"
    # A write to each part, through twotier: the next answer has it.
    assert http.patch(f"/artists/{ann}", json={"name": "Anne"}).status_code == 200
    assert http.patch(f"/tracks/{loose}", json={"album_id": album}).status_code == 200
    second = embedded()
    assert second["artist"]["name"] == "Anne"
    assert [row["id"] for row in second["tracks"]["items"]] == [track, loose]
    assert http.delete(f"/tracks/{track}").status_code == 204
    assert [row["id"] for row in embedded()["tracks"]["items"]] == [loose]
    # A reference to nothing, and none at all.
    assert http.get(f"/tracks/{loose}", params={"embed": "album"}).json()["album"]["id"] == album
    assert http.patch(f"/tracks/{loose}", json={"album_id": None}).status_code == 200
    assert http.get(f"/tracks/{loose}", params={"embed": "album"}).json()["album"] is None
    if url.startswith("dynamodb"):
        return
    # What the database's own join says.
    driven = url.replace("mysql://", "mysql+pymysql://", 1)
    engine = create_engine(driven.replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        with engine.connect() as conn:
            name = conn.execute(
                text(
                    "SELECT a.name FROM rel_albums b JOIN rel_artists a ON a.id = b.artist_id "
                    "WHERE b.id = :album"
                ),
                {"album": album},
            ).scalar()
    finally:
        engine.dispose()
    assert embedded()["artist"]["name"] == name


def test_embedding_is_checked(client: tuple[TestClient, str]) -> None:
    http, _ = client
    ann = _made(http, "/artists", {"name": "Ann"})
    album = _made(http, "/albums", {"title": "One", "artist_id": ann})
    for asked, says in (
        ("nope", "'nope' is not a relation of albums (it has: artist, tracks)"),
        ("artist,artist", "names a relation twice"),
    ):
        refused = http.get(f"/albums/{album}", params={"embed": asked})
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["loc"] == ["query", "embed"]
        assert says in refused.text
    assert http.get("/albums/999", params={"embed": "artist"}).status_code == 404
    empty = http.get(f"/albums/{album}", params={"embed": ""})
    assert empty.status_code == 422
    assert "names no relation" in empty.text


def test_the_openapi_document_describes_both(client: tuple[TestClient, str]) -> None:
    http, _ = client
    document = http.get("/openapi.json").json()
    nested = document["paths"]["/artists/{artist_id}/albums"]["get"]
    assert [p["name"] for p in nested["parameters"]][:3] == ["artist_id", "after", "limit"]
    schema = nested["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/AlbumPage"}
    read = document["paths"]["/albums/{album_id}"]["get"]
    embed = next(p for p in read["parameters"] if p["name"] == "embed")
    assert embed["schema"]["type"] == "string"
    assert "artist, tracks" in embed["description"]


def _declare(relations: str, extra: str = "") -> None:
    parse_resources(
        f"""
        [resources.artists]
        [resources.artists.fields]
        name = "string"
        {extra}
        [resources.albums]
        [resources.albums.fields]
        artist_id = "integer"
        code = "string"
        [resources.albums.relations]
        {relations}
        """,
        "test",
    )


@pytest.mark.parametrize(
    ("relations", "says"),
    [
        ('artist = { resource = "bands", field = "artist_id" }', "no resource 'bands'"),
        ('artist = { resource = "artists", field = "band_id" }', "'band_id' is not one of"),
        ('artist = { resource = "artists", field = "code" }', "code is a string, and"),
        ('artist_id = { resource = "artists", field = "artist_id" }', "is a field's name"),
        ('Artist = { resource = "artists", field = "artist_id" }', "not usable as a relation"),
        ('artist = { resource = "artists" }', "names the other resource"),
        ('artist = { resource = "artists", field = "artist_id", x = 1 }', "unknown setting 'x'"),
    ],
)
def test_a_relation_is_checked_where_it_is_declared(relations: str, says: str) -> None:
    with pytest.raises(ResourceError, match=says):
        _declare(relations)


def test_two_references_to_one_resource_need_a_reverse_name() -> None:
    two = (
        'artist = { resource = "artists", field = "artist_id" }\n'
        'other = { resource = "artists", field = "artist_id" }'
    )
    with pytest.raises(ResourceError, match="two relations are named 'albums'"):
        _declare(two)
    _declare(
        'artist = { resource = "artists", field = "artist_id" }\n'
        'other = { resource = "artists", field = "artist_id", reverse = "others" }'
    )


KEYED = """
[resources.bands]
table = "fk_bands"
key = "code"
[resources.bands.fields]
code = { type = "string", max_length = 8 }

[resources.records]
table = "fk_records"
key = "code"
[resources.records.fields]
code = { type = "string", max_length = 8 }
band = { type = "string", max_length = 8 }
[resources.records.relations]
by = { resource = "bands", field = "band", reverse = "records" }
"""


async def _made_database(url: str) -> None:
    """The test's database, made as twotier makes it (the tables come after)."""
    store = SQLStore(url, [])
    try:
        await store.init_schema()
    finally:
        await store.close()


@pytest.mark.parametrize("kind", SQL_STORES)
def test_a_write_the_databases_own_rules_refuse_is_a_409(kind: str, tmp_path: Path) -> None:
    """A foreign key of the user's own schema: a row that names no band, or a band rows
    still name, is refused by the database. The client is told which rule (409), never a
    500, and nothing was written."""
    declared = tmp_path / "keyed.toml"
    declared.write_text(KEYED)
    url = database_url(kind, tmp_path)
    asyncio.run(_made_database(url))
    driven = url.replace("mysql://", "mysql+pymysql://", 1)
    engine = create_engine(driven.replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS fk_records"))
            conn.execute(text("DROP TABLE IF EXISTS fk_bands"))
            conn.execute(text("CREATE TABLE fk_bands (code VARCHAR(8) PRIMARY KEY)"))
            conn.execute(
                text(
                    "CREATE TABLE fk_records (code VARCHAR(8) PRIMARY KEY, band VARCHAR(8) "
                    "NOT NULL, CONSTRAINT fk_records_band FOREIGN KEY (band) "
                    "REFERENCES fk_bands (code))"
                )
            )
        settings = Settings(
            database_url=url,
            cache_url="memory://",
            resources=str(declared),
            require_key_for_writes=False,
            follow="off",
        )
        with TestClient(create_app(settings)) as http:
            assert http.post("/bands", json={"code": "b1"}).status_code == 201
            orphan = http.post("/records", json={"code": "r1", "band": "nope"})
            assert orphan.status_code == 409, orphan.text
            assert "the database refused the write" in orphan.text
            assert "fk_records_band" in orphan.text or "FOREIGN KEY" in orphan.text
            assert "nope" not in orphan.text  # the rule, never the values
            assert http.get("/records/r1").status_code == 404
            assert http.post("/records", json={"code": "r1", "band": "b1"}).status_code == 201
            moved = http.patch("/records/r1", json={"band": "nope"})
            assert moved.status_code == 409, moved.text
            assert http.get("/records/r1").json()["band"] == "b1"
            held = http.delete("/bands/b1")
            assert held.status_code == 409, held.text
            assert http.get("/bands/b1/records").json()["items"] == [{"code": "r1", "band": "b1"}]
            many = {"USE_CACHE": True, "REQUEST": "write", "RESOURCE": "records"}
            batch = http.post("/batch", json=many | {"SQLS": [["r2", "b1"], ["r3", "nope"]]})
            assert batch.status_code == 409, batch.text
            assert http.get("/records/r2").status_code == 404  # all or nothing
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS fk_records"))
            conn.execute(text("DROP TABLE IF EXISTS fk_bands"))
        engine.dispose()
