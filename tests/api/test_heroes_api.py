"""The HTTP API over each pair of tiers: CRUD, X-Cache, and a clear error for bad input."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

ADA: dict[str, Any] = {
    "name": "Ada",
    "hero": "Captain Ada",
    "power": "math",
    "xp": 5,
    "color": "blue",
}


def create(client: TestClient, **fields: Any) -> dict[str, Any]:
    response = client.post("/heroes", json=ADA | fields)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_create_returns_201_with_location(client: TestClient) -> None:
    response = client.post("/heroes", json=ADA)
    assert response.status_code == 201
    created = response.json()
    assert list(created) == ["id", "name", "hero", "power", "xp", "color"]
    assert created == {"id": created["id"], **ADA}
    assert response.headers["location"] == f"/heroes/{created['id']}"


def test_reads_say_how_they_were_served(client: TestClient) -> None:
    hero_id = create(client)["id"]
    client.delete(f"/heroes/{hero_id + 1}")  # nothing there; just a write to move lists on
    first = client.get(f"/heroes/{hero_id + 100}")
    assert (first.status_code, first.headers["x-cache"]) == (404, "MISS")
    assert client.get(f"/heroes/{hero_id + 100}").headers["x-cache"] == "HIT"

    # A created row was written through: the first read is already a hit.
    hit = client.get(f"/heroes/{hero_id}")
    assert (hit.status_code, hit.headers["x-cache"]) == (200, "HIT")
    assert hit.json() == {"id": hero_id, **ADA}
    bypass = client.get(f"/heroes/{hero_id}", headers={"Cache-Control": "no-cache"})
    assert (bypass.headers["x-cache"], bypass.json()) == ("BYPASS", hit.json())


def test_put_then_get_shows_the_new_value_at_once(client: TestClient) -> None:
    hero_id = create(client)["id"]
    client.get(f"/heroes/{hero_id}")
    replaced = ADA | {"name": "Bea", "xp": 9}
    response = client.put(f"/heroes/{hero_id}", json=replaced)
    assert (response.status_code, response.json()) == (200, {"id": hero_id, **replaced})
    again = client.get(f"/heroes/{hero_id}")
    assert (again.headers["x-cache"], again.json()) == ("HIT", {"id": hero_id, **replaced})
    assert client.put("/heroes/999999", json=ADA).status_code == 404


def test_patch_changes_only_the_given_fields(client: TestClient) -> None:
    hero_id = create(client)["id"]
    response = client.patch(f"/heroes/{hero_id}", json={"power": "logic"})
    assert response.json() == {"id": hero_id, **ADA, "power": "logic"}
    merge = client.patch(
        f"/heroes/{hero_id}",
        content=b'{"xp": 6}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert merge.json()["xp"] == 6
    assert client.get(f"/heroes/{hero_id}").json()["xp"] == 6
    assert client.patch("/heroes/999999", json={"xp": 1}).status_code == 404
    unchanged = client.get(f"/heroes/{hero_id}")
    for nothing in ({}, {"name": None}):
        empty = client.patch(f"/heroes/{hero_id}", json=nothing)
        assert (empty.status_code, empty.json()) == (200, unchanged.json())
        assert empty.headers["etag"] == unchanged.headers["etag"]  # no new version
    assert client.patch("/heroes/999999", json={}).status_code == 404


def test_delete_then_get_is_404(client: TestClient) -> None:
    hero_id = create(client)["id"]
    client.get(f"/heroes/{hero_id}")
    response = client.delete(f"/heroes/{hero_id}")
    assert (response.status_code, response.content) == (204, b"")
    gone = client.get(f"/heroes/{hero_id}")
    assert gone.status_code == 404
    assert gone.json() == {"detail": f"hero {hero_id} not found"}
    assert client.delete(f"/heroes/{hero_id}").status_code == 404


def test_list_filters_and_pages(client: TestClient) -> None:
    ids = [create(client, name=f"p{i}", xp=i % 2)["id"] for i in range(5)]
    page = client.get("/heroes", params={"limit": 2})
    assert page.headers["x-cache"] == "MISS"
    body = page.json()
    assert [h["id"] for h in body["items"]] == ids[:2]
    assert body["next_after"] == ids[1]
    assert client.get("/heroes", params={"limit": 2}).headers["x-cache"] == "HIT"
    rest = client.get("/heroes", params={"limit": 10, "after": body["next_after"]}).json()
    assert ([h["id"] for h in rest["items"]], rest["next_after"]) == (ids[2:], None)

    by_xp = client.get("/heroes", params={"xp": 1}).json()["items"]
    assert [h["id"] for h in by_xp] == [ids[1], ids[3]]
    by_name = client.get("/heroes", params={"name": "p4", "xp": 0}).json()["items"]
    assert [h["id"] for h in by_name] == [ids[4]]

    client.patch(f"/heroes/{ids[0]}", json={"xp": 1})
    fresh = client.get("/heroes", params={"xp": 1})
    assert fresh.headers["x-cache"] == "MISS"
    assert [h["id"] for h in fresh.json()["items"]] == [ids[0], ids[1], ids[3]]


def test_text_is_returned_exactly(client: TestClient) -> None:
    for text in ["Robert'); DROP TABLE", "🦸\u200d♀️ héroïne", "x' OR '1'='1", "a" * 20]:
        hero_id = create(client, name=text)["id"]
        assert client.get(f"/heroes/{hero_id}").json()["name"] == text
        assert client.get("/heroes", params={"name": text}).json()["items"][0]["id"] == hero_id


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "x" * 21}, "name"),
        ({"xp": -1}, "xp"),
        ({"xp": 4_294_967_296}, "xp"),
        ({"xp": "5"}, "xp"),
        ({"xp": 5.5}, "xp"),
        ({"xp": True}, "xp"),
        ({"color": None}, "color"),
        ({"power": 7}, "power"),
        ({"name": "nul\u0000"}, "name"),
        ({"id": 3}, "id"),
        ({"extra": "field"}, "extra"),
    ],
)
def test_bad_heroes_get_422_naming_the_field(
    embedded: TestClient, fields: dict[str, Any], field: str
) -> None:
    response = embedded.post("/heroes", json=ADA | fields)
    assert response.status_code == 422, response.text
    assert [field] in [e["loc"][1:] for e in response.json()["detail"]]
    assert embedded.get("/heroes").json()["items"] == []  # nothing was written


def test_a_missing_field_is_named(embedded: TestClient) -> None:
    response = embedded.post("/heroes", json={k: v for k, v in ADA.items() if k != "hero"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "hero"]


def test_protocol_errors_are_json(embedded: TestClient) -> None:
    malformed = embedded.post(
        "/heroes", content=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["detail"].startswith("malformed JSON body")

    wrong_type = embedded.post(
        "/heroes", content=b"name=Ada", headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    assert "JSON" in wrong_type.json()["detail"]

    huge = embedded.post(
        "/heroes", content=b"{" + b" " * 4096 + b"}", headers={"Content-Type": "application/json"}
    )
    assert huge.status_code == 413
    assert "larger than 2048 bytes" in huge.json()["detail"]

    def chunks() -> Any:
        for _ in range(10):
            yield b" " * 512

    streamed = embedded.post(
        "/heroes", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413

    not_allowed = embedded.delete("/heroes")
    assert (not_allowed.status_code, not_allowed.json()) == (405, {"detail": "Method Not Allowed"})
    assert embedded.get("/nowhere").json() == {"detail": "Not Found"}

    # Text around a number names no id (Python's int would take " 7" and "7\n": found by
    # the fuzz test).
    for path in ["/heroes/0", "/heroes/abc", "/heroes/4294967296", "/heroes/1%0A", "/heroes/%201"]:
        bad_id = embedded.get(path)
        assert bad_id.status_code == 422
        assert bad_id.json()["detail"][0]["loc"] == ["path", "hero_id"]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"after": -1},
        {"after": 2**64},
        {"xp": -3},
        {"xp": "7\n"},
        {"after": " 1"},
        {"limit": "many"},
        {"name": "n" * 21},
    ],
)
def test_absurd_queries_get_422(embedded: TestClient, params: dict[str, Any]) -> None:
    response = embedded.get("/heroes", params=params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", next(iter(params))]


def test_health_readiness_openapi_and_offline_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok", "database": "ok", "cache": "ok"}
    spec = client.get("/openapi.json").json()
    assert {"/heroes", "/heroes/{hero_id}", "/healthz", "/readyz"} <= set(spec["paths"])
    parameters = spec["paths"]["/heroes/{hero_id}"]["get"]["parameters"]
    [hero_id] = [p for p in parameters if p["name"] == "hero_id"]
    assert (hero_id["schema"]["minimum"], hero_id["schema"]["maximum"]) == (1, 2**32 - 1)
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "cdn" not in docs.text.lower()
    assert "https://" not in docs.text
    for asset in ["swagger-ui-bundle.js", "swagger-ui.css"]:
        served = client.get(f"/static-offline-docs/{asset}")
        assert served.status_code == 200
        assert len(served.content) > 10_000


def test_a_dead_cache_degrades_reads_and_readiness(tmp_path: object) -> None:
    from tests.api.conftest import serve
    from tests.conftest import settings_for

    settings = settings_for("sqlite", "memory", tmp_path).model_copy(
        update={"cache_url": "redis://127.0.0.1:1/0", "cache_timeout": 0.2}
    )
    for client in serve(settings):
        hero_id = create(client)["id"]  # the write commits; the cache is not needed
        read = client.get(f"/heroes/{hero_id}")
        assert (read.status_code, read.headers["x-cache"]) == (200, "BYPASS")
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["database"] == "ok"
        assert ready.json()["detail"].startswith("not ready: cache: cache unavailable")


def test_every_response_carries_the_row_version(client: TestClient) -> None:
    created = client.post("/heroes", json=ADA)
    hero_id = created.json()["id"]
    born = int(created.headers["etag"].strip('"'))  # from the clock (twotier.versions)

    def tag(version: int) -> str:
        return f'"{version}"'

    assert client.get(f"/heroes/{hero_id}").headers["etag"] == tag(born)
    assert client.put(f"/heroes/{hero_id}", json=ADA).headers["etag"] == tag(born + 1)
    assert client.patch(f"/heroes/{hero_id}", json={"xp": 1}).headers["etag"] == tag(born + 2)
    bypass = client.get(f"/heroes/{hero_id}", headers={"Cache-Control": "no-cache"})
    assert bypass.headers["etag"] == tag(born + 2)
    deleted = client.delete(f"/heroes/{hero_id}")
    assert deleted.headers["etag"] == tag(born + 3)  # the tombstone's version
    assert client.get(f"/heroes/{hero_id}").headers["etag"] == tag(born + 3)
