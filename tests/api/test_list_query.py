"""The query language of lists over HTTP: operators, orders, chosen fields and cursors, on
the SQL stores with each kind of cache; the 422s that name what is wrong; the cache never
answering a page from before a write; DynamoDB's refusals."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import serve
from tests.conftest import settings_for
from twotier.api.list_query import list_parameters
from twotier.resources import load_resources

TRACKS = """
[resources.tracks]
table = "q_api_tracks"
ranges = ["price", "name"]
sets = ["genre", "composer"]
prefixes = ["name"]

[resources.tracks.fields]
name     = { type = "string", max_length = 40 }
genre    = { type = "string", max_length = 20 }
price    = { type = "decimal", precision = 6, scale = 2 }
composer = { type = "string", max_length = 40, nullable = true }
label    = { type = "string", max_length = 40, default = "" }
"""

TIERS = [("sqlite", "memory"), ("mysql", "redis"), ("postgres", "near")]


def _settings(store: str, cache: str, tmp_path: Path) -> Any:
    declared = tmp_path / "tracks.toml"
    declared.write_text(TRACKS)
    return settings_for(store, cache, tmp_path, resources=str(declared))


@pytest.fixture(params=TIERS, ids=["+".join(t) for t in TIERS])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    store, cache = request.param
    yield from serve(_settings(store, cache, tmp_path), role="write")


def _fill(client: TestClient, count: int = 40) -> list[dict[str, Any]]:
    made = []
    for n in range(count):
        row = {
            "name": ["Ca", "ca", "Cab", "Zoë", "a b"][n % 5] + str(n % 3),
            "genre": ["Rock", "Jazz", "Metal"][n % 3],
            "price": f"{(n * 37) % 300 / 100:.2f}",
            "composer": None if n % 4 else "Bach",
        }
        answered = client.post("/tracks", json=row)
        assert answered.status_code == 201, answered.text
        made.append(answered.json())
    return made


def _all_pages(client: TestClient, params: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    after = None
    while True:
        page = client.get("/tracks", params={**params, **({"after": after} if after else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        rows += body["items"]
        after = body["next_after"]
        if after is None:
            return rows
        assert isinstance(after, str)  # a cursor, not a key


def test_pages_in_an_order_visit_every_row_once(client: TestClient) -> None:
    made = _fill(client)
    rows = _all_pages(client, {"order": "-price", "limit": 6})
    wanted = sorted(made, key=lambda r: (float(r["price"]), r["id"]), reverse=True)
    assert [r["id"] for r in rows] == [r["id"] for r in wanted]
    ranged = _all_pages(client, {"price[gte]": "0.50", "price[lt]": "2", "limit": 4})
    inside = [r for r in made if 0.5 <= float(r["price"]) < 2]
    # Comparisons without an order come in their field's order (the index that serves them).
    assert [r["id"] for r in ranged] == [
        r["id"] for r in sorted(inside, key=lambda r: (float(r["price"]), r["id"]))
    ]


def test_operators_and_chosen_fields(client: TestClient) -> None:
    made = _fill(client)
    found = client.get("/tracks", params={"name[prefix]": "Ca", "fields": "name,id"}).json()
    names = sorted((r["name"].encode(), r["id"]) for r in made if r["name"].startswith("Ca"))
    assert [(r["name"].encode(), r["id"]) for r in found["items"]] == names
    assert all(list(r) == ["name", "id"] for r in found["items"])
    twice = client.get("/tracks", params={"name[prefix]": "Ca", "fields": "name,id,name"})
    assert twice.json() == found  # a field named twice is there once
    sets = client.get("/tracks", params={"genre[in]": "Jazz,Metal", "limit": 1000}).json()
    assert [r["id"] for r in sets["items"]] == [
        r["id"] for r in made if r["genre"] in ("Jazz", "Metal")
    ]
    quoted = client.get("/tracks", params={"genre[in]": '"Rock",Nope'}).json()
    assert {r["genre"] for r in quoted["items"]} == {"Rock"}
    nulls = client.get("/tracks", params={"composer[null]": "false", "limit": 1000}).json()
    assert [r["id"] for r in nulls["items"]] == [r["id"] for r in made if r["composer"]]


def test_a_page_is_never_older_than_a_write(client: TestClient) -> None:
    _fill(client, 10)
    params = {"price[gte]": "1", "order": "price"}
    first = client.get("/tracks", params=params)
    assert first.headers["x-cache"] == "MISS"
    again = client.get("/tracks", params=params)
    assert again.headers["x-cache"] == "HIT"
    assert again.json() == first.json()
    new = client.post(
        "/tracks", json={"name": "New", "genre": "Rock", "price": "1.00", "composer": None}
    ).json()
    after = client.get("/tracks", params=params).json()
    assert new["id"] in [r["id"] for r in after["items"]]
    client.patch(f"/tracks/{new['id']}", json={"price": "0.10"})
    assert new["id"] not in [r["id"] for r in client.get("/tracks", params=params).json()["items"]]


def test_a_write_outside_a_page_leaves_it_cached(client: TestClient) -> None:
    """A page is invalidated only by writes within its range (to the precision of
    ``spans``): a write whose old and new values are far outside it leaves it cached."""
    _fill(client, 12)
    pages = {
        "price": {"price[gte]": "1.00", "price[lt]": "1.50"},
        "genre": {"genre[in]": "Jazz"},
        "name": {"name[prefix]": "Zo"},
        "id": {"id[gte]": "3", "id[lte]": "5"},
    }
    for params in pages.values():
        assert client.get("/tracks", params=params).headers["x-cache"] == "MISS"
        assert client.get("/tracks", params=params).headers["x-cache"] == "HIT"
    far = {"name": "Ca9", "genre": "Rock", "price": "2.50", "composer": None}
    made = client.post("/tracks", json=far).json()
    assert client.patch(f"/tracks/{made['id']}", json={"price": "0.10"}).status_code == 200
    for params in pages.values():
        assert client.get("/tracks", params=params).headers["x-cache"] == "HIT"
    # A row within one page's range: that page, and only it, is read again, with the row.
    zoo = client.post("/tracks", json={**far, "name": "Zoo", "price": "2.60"}).json()
    for name, params in pages.items():
        answered = client.get("/tracks", params=params)
        assert answered.headers["x-cache"] == ("MISS" if name == "name" else "HIT"), name
    assert zoo["id"] in [
        r["id"] for r in client.get("/tracks", params=pages["name"]).json()["items"]
    ]
    # A row moved into a range from outside it: the page it entered is read again.
    client.patch(f"/tracks/{made['id']}", json={"genre": "Jazz"})
    answered = client.get("/tracks", params=pages["genre"])
    assert answered.headers["x-cache"] == "MISS"
    assert made["id"] in [r["id"] for r in answered.json()["items"]]


def test_a_cursor_is_of_its_own_query_and_cannot_be_changed(client: TestClient) -> None:
    _fill(client, 12)
    cursor = client.get("/tracks", params={"order": "price", "limit": 3}).json()["next_after"]
    other = client.get("/tracks", params={"order": "-price", "after": cursor})
    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"] == ["query", "after"]
    assert "another query" in other.json()["detail"][0]["msg"]
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[-2] ^= 1  # the position it names, changed
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    refused = client.get("/tracks", params={"order": "price", "after": forged})
    assert refused.status_code == 422
    assert "not a cursor this server made" in refused.json()["detail"][0]["msg"]
    assert client.get("/tracks", params={"order": "price", "after": "x!"}).status_code == 422
    # By key, after is a key, as it always was.
    key = client.get("/tracks", params={"limit": 3}).json()["next_after"]
    assert isinstance(key, int)
    assert client.get("/tracks", params={"after": "abc"}).status_code == 422


@pytest.mark.parametrize(
    ("params", "where", "said"),
    [
        ({"genre[gt]": "a"}, "genre[gt]", "genre takes in"),
        ({"label[in]": "a"}, "label[in]", "label takes no operator"),
        ({"price[in]": "1"}, "price[in]", "price takes gt, gte, lt, lte"),
        ({"price[gt]": "1", "name[prefix]": "C"}, "price[gt]", "one field"),
        ({"price[gt]": "1", "order": "name"}, "order", "no index serves both"),
        ({"order": "composer"}, "order", "cannot be ordered by"),
        ({"order": "price,name"}, "order", "orders by one field"),
        ({"order": "-price,id"}, "order", "mixes directions"),
        ({"order": "colour"}, "order", "is not a field"),
        ({"fields": "name,nope"}, "fields", "'nope' is not a field"),
        ({"genre[in]": ",".join(["x"] * 101)}, "genre[in]", "at most 100"),
        ({"genre[in]": '"Rock'}, "genre[in]", "not values separated by commas"),
        ({"name[prefix]": ""}, "name[prefix]", "at least 1"),
        ({"price[lt]": "1.234"}, "price[lt]", "digits after the point"),
    ],
)
def test_what_no_index_serves_or_makes_no_sense_is_a_422(
    tmp_path: Path, params: dict[str, str], where: str, said: str
) -> None:
    for client in serve(_settings("sqlite", "memory", tmp_path), role=None):
        answered = client.get("/tracks", params=params)
        assert answered.status_code == 422, answered.text
        [problem] = answered.json()["detail"]
        assert problem["loc"] == ["query", where]
        assert said in problem["msg"]


def test_the_document_describes_every_operator(tmp_path: Path) -> None:
    for client in serve(_settings("sqlite", "memory", tmp_path), role=None):
        document = client.get("/openapi.json").json()
        listed = {p["name"] for p in document["paths"]["/tracks"]["get"]["parameters"]}
        assert {"price[gte]", "name[prefix]", "genre[in]", "composer[null]"} <= listed
        assert {"order", "fields", "after", "limit", "id[gt]", "id[in]"} <= listed
        assert "genre[gt]" not in listed


@pytest.mark.parametrize(
    "declared",
    [
        TRACKS,
        """
[resources.pairs]
table = "q_pairs"
key = ["first", "second"]
ranges = ["second", "label"]

[resources.pairs.fields]
first  = { type = "integer", minimum = 0 }
second = { type = "integer", minimum = 0 }
label = { type = "string", max_length = 20 }
""",
    ],
    ids=["one-field-key", "composite-key"],
)
def test_every_order_the_document_offers_is_taken(tmp_path: Path, declared: str) -> None:
    path = tmp_path / "declared.toml"
    path.write_text(declared)
    settings = settings_for("sqlite", "memory", tmp_path, resources=str(path))
    [resource] = load_resources(str(path))
    [order] = [p for p in list_parameters(resource, settings) if p.name == "order"]
    offered = order.adapter.json_schema()["enum"]
    assert offered
    for text in offered:
        assert order.adapter.validate_python(text) == text


def test_dynamodb_lists_take_exact_filters_only(tmp_path: Path) -> None:
    for client in serve(settings_for("dynamodb", "memory", tmp_path), role=None):
        assert client.get("/heroes", params={"fields": "name"}).status_code == 200
        for params in ({"order": "-id"}, {"id[gt]": "3"}, {"xp[lte]": "3"}):
            answered = client.get("/heroes", params=params)
            assert answered.status_code == 422
            assert "DynamoDB" in answered.json()["detail"][0]["msg"]
