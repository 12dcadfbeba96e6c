"""Declared resources over HTTP, on every pair of tiers: a client-given string key
(products), every field type (events), conditional requests, and the seed's batch protocol
addressing another resource."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import TIERS, serve
from tests.conftest import DECLARED, settings_for

LAMP: dict[str, Any] = {
    "sku": "A-1",
    "name": "Lamp",
    "category": "home",
    "price": 12.5,
    "stock": 3,
}


@pytest.fixture(params=TIERS, ids=["+".join(t) for t in TIERS])
def client(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[TestClient]:
    store_kind, cache_kind = request.param
    yield from serve(settings_for(store_kind, cache_kind, tmp_path, resources=str(DECLARED)))


def without_key(row: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in row.items() if name != "sku"}


def test_a_client_keyed_resource_end_to_end(client: TestClient) -> None:
    created = client.post("/products", json=LAMP)
    assert created.status_code == 201, created.text
    assert created.json() == LAMP | {"active": True}  # the declared default
    assert created.headers["location"] == "/products/A-1"
    tag = created.headers["etag"]

    read = client.get("/products/A-1")
    assert (read.status_code, read.headers["x-cache"], read.headers["etag"]) == (200, "HIT", tag)
    assert read.json() == created.json()

    duplicate = client.post("/products", json=LAMP | {"name": "Other"})
    assert duplicate.status_code == 409
    assert "exists" in duplicate.json()["detail"]
    assert client.get("/products/A-1").json()["name"] == "Lamp"  # nothing was written

    # PUT to a missing key creates it; to an existing one, replaces it.
    made = client.put("/products/B-2", json=without_key(LAMP) | {"name": "Chair"})
    assert (made.status_code, made.headers["location"]) == (201, "/products/B-2")
    replaced = client.put("/products/B-2", json=without_key(LAMP) | {"name": "Stool"})
    assert (replaced.status_code, replaced.json()["name"]) == (200, "Stool")
    assert client.get("/products/B-2").json()["name"] == "Stool"
    keyed = client.put("/products/B-2", json=LAMP)  # the path names the key, not the body
    assert keyed.status_code == 422

    # Case matters in keys, as everywhere: another key, another row.
    assert client.post("/products", json=LAMP | {"sku": "a-1"}).status_code == 201
    assert client.get("/products/a-1").json()["sku"] == "a-1"

    assert client.delete("/products/A-1").status_code == 204
    gone = client.get("/products/A-1")
    assert (gone.status_code, gone.json()) == (404, {"detail": "product A-1 not found"})
    # A row made again under the key is never hidden behind the old tombstone.
    again = client.post("/products", json=LAMP | {"name": "Lamp II"})
    assert again.status_code == 201
    fresh = client.get("/products/A-1")
    assert (fresh.status_code, fresh.json()["name"]) == (200, "Lamp II")


def test_lookups_stay_fresh_when_a_row_moves(client: TestClient) -> None:
    for number, category in enumerate(["home", "home", "garden"]):
        client.post("/products", json=LAMP | {"sku": f"S-{number}", "category": category})
    home = client.get("/products", params={"category": "home"})
    assert (home.headers["x-cache"], [r["sku"] for r in home.json()["items"]]) == (
        "MISS",
        ["S-0", "S-1"],
    )
    assert client.get("/products", params={"category": "home"}).headers["x-cache"] == "HIT"
    client.get("/products", params={"category": "garden"})

    assert client.patch("/products/S-1", json={"category": "garden"}).status_code == 200
    home = client.get("/products", params={"category": "home"})
    garden = client.get("/products", params={"category": "garden"})
    assert (home.headers["x-cache"], garden.headers["x-cache"]) == ("MISS", "MISS")
    assert [r["sku"] for r in home.json()["items"]] == ["S-0"]
    assert [r["sku"] for r in garden.json()["items"]] == ["S-1", "S-2"]
    # Pages go by key, as text.
    page = client.get("/products", params={"limit": 2}).json()
    assert ([r["sku"] for r in page["items"]], page["next_after"]) == (["S-0", "S-1"], "S-1")
    rest = client.get("/products", params={"limit": 2, "after": "S-1"}).json()
    assert ([r["sku"] for r in rest["items"]], rest["next_after"]) == (["S-2"], None)
    filtered = client.get("/products", params={"active": "true", "stock": 3, "price": 12.5})
    assert len(filtered.json()["items"]) == 3


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"price": -1}, "price"),
        ({"stock": 1.5}, "stock"),
        ({"active": "yes"}, "active"),
        ({"sku": "a/b"}, "sku"),
        ({"sku": ""}, "sku"),
        ({"colour": "red"}, "colour"),
        ({"name": "x" * 201}, "name"),
    ],
)
def test_bad_rows_are_422_naming_the_field(
    client: TestClient, fields: dict[str, Any], field: str
) -> None:
    response = client.post("/products", json=LAMP | fields)
    assert response.status_code == 422, response.text
    assert [field] in [e["loc"][1:] for e in response.json()["detail"]]


def test_every_type_round_trips_exactly(client: TestClient) -> None:
    event = {"title": "Launch", "at": "2026-11-24T19:30:00.123456+02:00", "score": 2.5}
    created = client.post("/events", json=event)
    assert created.status_code == 201, created.text
    stored = created.json()
    assert stored == {
        "id": stored["id"],
        "title": "Launch",
        "at": "2026-11-24T17:30:00.123456Z",  # in UTC, to the microsecond
        "note": None,
        "score": 2.5,
        "done": False,
    }
    bypass = client.get(f"/events/{stored['id']}", headers={"Cache-Control": "no-cache"})
    assert bypass.json() == stored  # as the database gives it back
    at = client.get("/events", params={"at": "2026-11-24T17:30:00.123456Z"})
    assert [e["id"] for e in at.json()["items"]] == [stored["id"]]
    noted = client.patch(f"/events/{stored['id']}", json={"note": "n", "done": True})
    assert (noted.json()["note"], noted.json()["done"]) == ("n", True)
    cleared = client.patch(f"/events/{stored['id']}", json={"note": None, "title": None})
    assert (cleared.json()["note"], cleared.json()["title"]) == (None, "Launch")
    for wrong in ("2026-11-24T19:30:00", "0001-01-01T00:00:00+00:09", "2026-02-30T00:00:00Z"):
        refused = client.post("/events", json=event | {"at": wrong})
        assert refused.status_code == 422, wrong  # never a 500 from a year no database holds
    finer = client.post("/events", json=event | {"at": "2026-11-24T19:30:00.123456789Z"})
    assert finer.json()["at"] == "2026-11-24T19:30:00.123456Z"  # to the microsecond


def test_a_field_named_like_a_bound_value_is_written_as_given(client: TestClient) -> None:
    """The events' ``at``: PUT and PATCH store the time given, as the database then reads
    it back, on every store (the key and the expected version are bound under names no
    field can have)."""
    created = client.post("/events", json={"title": "a", "at": "2020-01-01T00:00:00Z"}).json()
    path = f"/events/{created['id']}"
    fresh = {"Cache-Control": "no-cache"}
    put = client.put(path, json={"title": "b", "at": "3113-11-29T10:41:55.765Z"})
    assert put.json()["at"] == "3113-11-29T10:41:55.765000Z"
    assert client.get(path, headers=fresh).json() == put.json()
    patched = client.patch(path, json={"at": "2021-06-01T12:00:00Z"}, headers={"If-Match": "*"})
    assert patched.json()["at"] == "2021-06-01T12:00:00Z"
    assert client.get(path, headers=fresh).json() == patched.json()
    assert client.delete(path, headers={"If-Match": patched.headers["etag"]}).status_code == 204


def test_conditional_requests(client: TestClient) -> None:
    created = client.post("/products", json=LAMP)
    tag = created.headers["etag"]
    # In front of the routes, and (Cache-Control: no-cache sends it there) through them.
    for extra in ({}, {"Cache-Control": "no-cache"}):
        unchanged = client.get("/products/A-1", headers={"If-None-Match": tag} | extra)
        assert (unchanged.status_code, unchanged.content) == (304, b"")
        assert unchanged.headers["etag"] == tag
        changed = client.get("/products/A-1", headers={"If-None-Match": '"1"'} | extra)
        assert changed.status_code == 200
    assert client.get("/products/A-1", headers={"If-None-Match": "*"}).status_code == 304

    stale = {"If-Match": '"1"'}
    for method, body in [("PUT", without_key(LAMP)), ("PATCH", {"stock": 9}), ("DELETE", None)]:
        refused = client.request(method, "/products/A-1", json=body, headers=stale)
        assert refused.status_code == 412, (method, refused.text)
        assert refused.headers["etag"] == tag  # the version it is at
    assert client.get("/products/A-1").json()["stock"] == 3  # nothing was written

    changed = client.patch("/products/A-1", json={"stock": 9}, headers={"If-Match": tag})
    assert changed.status_code == 200
    newer = changed.headers["etag"]
    assert newer != tag
    # The first client's tag is stale now: its update is refused, not lost in between.
    lost = client.put("/products/A-1", json=without_key(LAMP), headers={"If-Match": tag})
    assert lost.status_code == 412
    assert client.delete("/products/A-1", headers={"If-Match": newer}).status_code == 204
    # If-Match: * wants a row that is there: no creation by PUT.
    assert (
        client.put("/products/A-1", json=without_key(LAMP), headers={"If-Match": "*"}).status_code
        == 412
    )
    assert client.patch("/products/A-1", json={}, headers={"If-Match": "*"}).status_code == 412
    assert client.get("/products/A-1").status_code == 404


def test_the_seed_protocol_reaches_other_resources(client: TestClient) -> None:
    rows = [LAMP | {"sku": f"S-{n}", "category": c} for n, c in enumerate("aab")]
    written = client.post(
        "/batch",
        json={"USE_CACHE": "True", "REQUEST": "write", "SQLS": rows, "RESOURCE": "products"},
    )
    assert written.json() == {"statusCode": 200, "body": "write success"}
    by_category = client.post(
        "/batch",
        json={"USE_CACHE": "True", "REQUEST": "read", "SQLS": ["b", "a"], "RESOURCE": "products"},
    )
    assert [r["sku"] for r in by_category.json()["body"]] == ["S-2", "S-0", "S-1"]
    by_sku = client.post(
        "/batch",
        json={
            "USE_CACHE": "False",
            "REQUEST": "read",
            "KEY": "sku",
            "SQLS": ["S-1", "nope"],
            "RESOURCE": "products",
        },
    )
    assert [r["sku"] for r in by_sku.json()["body"]] == ["S-1"]
    again = client.post(
        "/batch",
        json={"USE_CACHE": "True", "REQUEST": "write", "SQLS": rows[:1], "RESOURCE": "products"},
    )
    assert again.status_code == 409
    unknown = client.post(
        "/batch", json={"USE_CACHE": "True", "REQUEST": "read", "SQLS": [1], "RESOURCE": "orders"}
    )
    assert unknown.status_code == 400
    assert "no resource 'orders'" in unknown.json()["body"]["detail"]


def test_each_resource_has_its_schemas(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/products", "/products/{product_sku}", "/events/{event_id}"} <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    assert {"Product", "ProductIn", "ProductReplace", "ProductPatch", "ProductPage"} <= set(schemas)
    # PUT takes the row as GET answers it: the key may be given, and is not required.
    assert "sku" in schemas["ProductReplace"]["properties"]
    assert "sku" not in schemas["ProductReplace"].get("required", [])
    assert schemas["Event"]["properties"]["at"]["format"] == "date-time"


def test_a_key_any_text_can_hold_names_its_row(client: TestClient) -> None:
    # ("%41" is left to real servers: the test client decodes a path twice.)
    for key in ["Zoë 🦸", "a b?c#d", "~¥\u001e"]:
        created = client.post("/products", json=LAMP | {"sku": key})
        assert created.status_code == 201, created.text
        location = created.headers["location"]
        assert location.isascii()
        read = client.get(location)
        assert (read.status_code, read.json()["sku"]) == (200, key)
        replaced = client.put(
            location.replace(quote(key, safe=""), quote(key + "2", safe="")), json=without_key(LAMP)
        )
        assert replaced.status_code == 201
        assert client.get(replaced.headers["location"]).json()["sku"] == key + "2"
