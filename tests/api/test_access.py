"""Access control over real tiers: API keys with roles, revocation, rate limits."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import TIERS, serve
from tests.api.test_heroes_api import ADA
from tests.conftest import make_key, open_store, settings_for
from twotier.access.keys import key_id_of
from twotier.api.app import create_app
from twotier.bench.target import free_port
from twotier.config import Settings


def anonymous(settings: Settings, **extra: Any) -> Iterator[TestClient]:
    """A client without a key. Keys made during a test are seen at once: the app reloads
    keys on every request unless the test sets a refresh period."""
    if "api_key_refresh" not in settings.model_fields_set:
        extra = {"api_key_refresh": 0} | extra
    return serve(settings.model_copy(update=extra), role=None)


@pytest.fixture(params=TIERS, ids=["+".join(t) for t in TIERS])
def tiers(request: pytest.FixtureRequest, tmp_path: object) -> Settings:
    store_kind, cache_kind = request.param
    return settings_for(store_kind, cache_kind, tmp_path, api_key_refresh=0)


def with_key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def test_writes_need_a_key_with_the_write_role(tiers: Settings) -> None:
    for client in anonymous(tiers):
        url = tiers.database_url
        reader, writer, admin = (make_key(url, role) for role in ("read", "write", "admin"))

        missing = client.post("/heroes", json=ADA)
        assert missing.status_code == 401
        assert missing.json()["detail"] == (
            "this request needs an API key with role 'write' (header X-API-Key)"
        )
        assert missing.headers["www-authenticate"].startswith("Bearer")
        too_low = client.post("/heroes", json=ADA, headers=with_key(reader))
        assert too_low.status_code == 403
        assert "has role 'read'; this needs 'write'" in too_low.json()["detail"]
        assert client.get("/heroes").json()["items"] == []  # nothing was written

        created = client.post("/heroes", json=ADA, headers=with_key(writer))
        assert created.status_code == 201
        hero_id = created.json()["id"]
        for method in ("put", "patch", "delete"):
            denied = client.request(method, f"/heroes/{hero_id}", json=ADA)
            assert denied.status_code == 401, method
        bearer = {"Authorization": f"Bearer {admin}"}
        assert client.patch(f"/heroes/{hero_id}", json={"xp": 9}, headers=bearer).status_code == 200
        # Reads are open by default, the hot path included.
        assert client.get(f"/heroes/{hero_id}").json()["xp"] == 9


@pytest.mark.parametrize(
    "key",
    [
        "nonsense",
        "tt_000000000000_not-the-secret",
        "tt_short_secret",
        "",
    ],
)
def test_a_bad_key_is_a_clear_401_never_a_500(key: str, tmp_path: object) -> None:
    for client in anonymous(settings_for("sqlite", "memory", tmp_path)):
        for method, path in [("GET", "/heroes/1"), ("GET", "/heroes"), ("POST", "/heroes")]:
            answer = client.request(method, path, json=ADA, headers=with_key(key))
            if key == "" and method == "GET":  # an empty header is no key: reads are open
                assert answer.status_code == (404 if path == "/heroes/1" else 200), path
                continue
            assert answer.status_code == 401, (method, path)
            assert answer.json()["detail"].startswith(("invalid API key", "this request needs"))


def test_a_right_id_with_a_wrong_secret_is_refused(tmp_path: object) -> None:
    settings = settings_for("sqlite", "memory", tmp_path)
    for client in anonymous(settings):
        real = make_key(settings.database_url, "admin")
        forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
        answer = client.post("/heroes", json=ADA, headers=with_key(forged))
        assert (answer.status_code, answer.json()["detail"]) == (
            401,
            "invalid API key: unknown or revoked API key",
        )


def test_reads_can_need_a_key(tmp_path: object) -> None:
    settings = settings_for("sqlite", "memory", tmp_path, require_key_for_reads=True)
    for client in anonymous(settings):
        reader = make_key(settings.database_url, "read")
        writer = make_key(settings.database_url, "write")
        hero_id = client.post("/heroes", json=ADA, headers=with_key(writer)).json()["id"]
        for path in (f"/heroes/{hero_id}", "/heroes", "/metrics"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers=with_key(reader)).status_code == 200, path
        event = {"USE_CACHE": "True", "REQUEST": "read", "SQLS": [5]}
        assert client.post("/batch", json=event).status_code == 401
        assert client.post("/batch", json=event, headers=with_key(reader)).status_code == 200
        for open_path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
            assert client.get(open_path).status_code == 200, open_path


def test_batch_writes_need_the_write_role_and_reads_do_not(tiers: Settings) -> None:
    for client in anonymous(tiers):
        reader = make_key(tiers.database_url, "read")
        write = {"USE_CACHE": "True", "REQUEST": "write", "SQLS": [["Bo", "Bolt", "run", 7, "red"]]}
        read = {"USE_CACHE": "True", "REQUEST": "read", "SQLS": [7]}
        refused = client.post("/batch", json=write)
        assert refused.status_code == 401
        assert refused.json()["statusCode"] == 401  # the seed's answer shape
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert client.post("/batch", json=write, headers=with_key(reader)).status_code == 403
        assert client.post("/batch", json=read).json() == {"statusCode": 200, "body": []}
        writer = make_key(tiers.database_url, "write")
        assert client.post("/batch", json=write, headers=with_key(writer)).status_code == 200
        assert len(client.post("/batch", json=read).json()["body"]) == 1


def test_keys_are_stored_hashed_and_revocation_takes_effect(tiers: Settings) -> None:
    for client in anonymous(tiers):
        admin = make_key(tiers.database_url, "admin")
        made = client.post(
            "/admin/keys", json={"name": "ci", "role": "write"}, headers=with_key(admin)
        )
        assert made.status_code == 201
        key, key_id = made.json()["key"], made.json()["id"]
        assert key_id_of(key) == key_id
        assert client.post("/heroes", json=ADA, headers=with_key(key)).status_code == 201

        listed = client.get("/admin/keys", headers=with_key(admin)).json()
        assert {k["id"]: k["role"] for k in listed}[key_id] == "write"
        assert all("key" not in k and "secret_hash" not in k for k in listed)
        stored = {k.id: k for k in _stored_keys(tiers.database_url)}[key_id]
        assert stored.secret_hash == hashlib.sha256(key.encode()).hexdigest()
        assert key not in repr(stored)

        # Only admins manage keys.
        assert client.get("/admin/keys", headers=with_key(key)).status_code == 403
        assert client.delete(f"/admin/keys/{key_id}", headers=with_key(admin)).status_code == 204
        assert client.delete(f"/admin/keys/{key_id}", headers=with_key(admin)).status_code == 404
        # TWOTIER_API_KEY_REFRESH=0 here: the next request sees the revocation.
        assert client.post("/heroes", json=ADA, headers=with_key(key)).status_code == 401


def _stored_keys(url: str) -> list[Any]:
    import asyncio

    async def read() -> list[Any]:
        store = open_store(url)
        try:
            return await store.list_keys()
        finally:
            await store.close()

    return asyncio.run(read())


def test_a_key_made_while_serving_works_within_a_second(tmp_path: object) -> None:
    settings = settings_for("sqlite", "memory", tmp_path, api_key_refresh=3600)
    for client in anonymous(settings):
        assert client.post("/heroes", json=ADA).status_code == 401  # loads the (empty) keys
        key = make_key(settings.database_url, "write")
        # Not at the next periodic reload (an hour away): an unknown id asks the database,
        # at most once a second.
        statuses = []
        for _ in range(30):
            statuses.append(client.post("/heroes", json=ADA, headers=with_key(key)).status_code)
            if statuses[-1] == 201:
                break
            time.sleep(0.1)
        assert statuses[-1] == 201
        assert set(statuses[:-1]) <= {401}


def test_rate_limit_per_address_answers_429_with_retry_after(tmp_path: object) -> None:
    settings = settings_for(
        "sqlite", "memory", tmp_path, rate_limit_per_address=1, rate_limit_burst_seconds=3
    )
    for client in anonymous(settings):
        answers = [client.get("/heroes/1").status_code for _ in range(4)]
        assert answers[:3] != [429] * 3
        assert answers[3] == 429
        limited = client.get("/heroes")
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert "rate limit exceeded" in limited.json()["detail"]
        assert client.get("/healthz").status_code == 200  # probes are never limited
        # A valid key draws on its own bucket, not the address's.
        key = make_key(settings.database_url, "read")
        assert client.get("/heroes/1", headers=with_key(key)).status_code != 429


@pytest.mark.parametrize("cache_kind", ["redis", "cluster"])
def test_rate_limits_live_in_redis_across_processes(tmp_path: object, cache_kind: str) -> None:
    settings = settings_for(
        "sqlite", cache_kind, tmp_path, rate_limit_per_key=0.5, rate_limit_burst_seconds=4
    )
    key = make_key(settings.database_url, "read")
    with (
        TestClient(create_app(settings), headers=with_key(key)) as first,
        TestClient(create_app(settings), headers=with_key(key)) as second,
    ):
        # A burst of two, shared: what one process spent, the other cannot.
        assert first.get("/heroes").status_code == 200
        assert second.get("/heroes").status_code == 200
        assert first.get("/heroes").status_code == 429
        assert second.get("/heroes").status_code == 429


def test_rate_limits_fail_open_when_redis_is_down(tmp_path: object) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = settings_for("sqlite", "memory", tmp_path, rate_limit_per_address=0.001)
    settings = settings.model_copy(update={"cache_url": dead, "cache_timeout": 0.2})
    for client in anonymous(settings):
        # The cache is down: reads come from the database, and no limit can be applied.
        assert [client.get("/heroes").status_code for _ in range(3)] == [200, 200, 200]


def test_the_server_says_how_to_get_a_key(
    tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="twotier"):
        for _client in anonymous(settings_for("sqlite", "memory", tmp_path)):
            pass
    hints = [r.getMessage() for r in caplog.records if "twotier keys create" in r.getMessage()]
    assert len(hints) == 1
    caplog.clear()
    open_writes = settings_for("sqlite", "memory", tmp_path, require_key_for_writes=False)
    with caplog.at_level(logging.INFO, logger="twotier"):
        for client in anonymous(open_writes):
            assert client.post("/heroes", json=ADA).status_code == 201
    assert any("writes are open to anyone" in r.getMessage() for r in caplog.records)


def test_a_mount_point_is_a_prefix_only_before_a_slash(tmp_path: object) -> None:
    """Under the mount point `/a`, `/admin/keys` is the admin path, as Starlette's routing
    takes it: the guard judged it as `dmin/keys` (no role needed) while the route served
    the admin's list."""
    settings = settings_for("sqlite", "memory", tmp_path)
    make_key(settings.database_url, "admin")
    with TestClient(create_app(settings), root_path="/a") as client:
        refused = client.get("/admin/keys")
        assert refused.status_code == 401, refused.text
        assert client.get("/a/admin/keys").status_code == 401
        assert client.get("/a/healthz").status_code == 200


def test_an_answer_to_a_key_is_private(tmp_path: object) -> None:
    """A CDN in front must not keep an answer to a request with a key for others; an
    anonymous read stays cacheable by anyone (it is anyone's), and a route's own
    Cache-Control (no-store on a new key's secret) is kept."""
    settings = settings_for("sqlite", "memory", tmp_path)
    for client in anonymous(settings):
        writer = make_key(settings.database_url, "write")
        admin = make_key(settings.database_url, "admin")
        hero_id = client.post("/heroes", json=ADA, headers=with_key(writer)).json()["id"]
        for path in (f"/heroes/{hero_id}", "/heroes", "/heroes/999", "/metrics"):
            keyed = client.get(path, headers=with_key(writer))
            assert keyed.headers["cache-control"] == "private", path
            assert "cache-control" not in client.get(path).headers, path
        bearer = client.get(f"/heroes/{hero_id}", headers={"Authorization": f"Bearer {writer}"})
        assert bearer.headers["cache-control"] == "private"
        made = client.post(
            "/admin/keys", json={"name": "n", "role": "read"}, headers=with_key(admin)
        )
        assert made.headers["cache-control"] == "no-store"


def test_the_documents_can_be_closed(tmp_path: object) -> None:
    settings = settings_for("sqlite", "memory", tmp_path, docs="off")
    for client in anonymous(settings):
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            assert client.get(path).status_code == 404, path
        assert client.get("/heroes").status_code == 200


def test_an_anonymous_batch_write_is_refused_before_its_body_is_parsed(tmp_path: object) -> None:
    """A body that says it writes, from a caller who may not: the seed's 401, without the
    body being parsed (here it would not parse at all: 400 otherwise); one that says it
    reads is parsed and served as before."""
    settings = settings_for("sqlite", "memory", tmp_path)
    for client in anonymous(settings):
        broken = b'{"USE_CACHE": "True", "REQUEST": "write", "SQLS": [[1, 2,'
        refused = client.post(
            "/batch", content=broken, headers={"Content-Type": "application/json"}
        )
        assert refused.status_code == 401, refused.text
        assert refused.json()["statusCode"] == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        read = b'{"USE_CACHE": "True", "REQUEST": "read", "SQLS": [1,'
        parsed = client.post("/batch", content=read, headers={"Content-Type": "application/json"})
        assert parsed.status_code == 400
        assert "malformed JSON" in parsed.json()["detail"]


def test_reads_without_a_key_skip_the_cache_within_a_budget(tmp_path: object) -> None:
    """Cache-Control: no-cache (or a batch's USE_CACHE false) sends a read to the database:
    anyone could make every read a query. Without a key, within the budget; past it 429
    with Retry-After; with a key, always."""
    settings = settings_for(
        "sqlite", "memory", tmp_path, anonymous_bypass_per_second=1, rate_limit_burst_seconds=2
    )
    for client in anonymous(settings):
        fresh = {"Cache-Control": "no-cache"}
        answers = [client.get("/heroes/1", headers=fresh).status_code for _ in range(3)]
        assert answers == [404, 404, 429]
        limited = client.get("/heroes", headers=fresh)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert "skip the cache" in limited.json()["detail"]
        uncached = {"USE_CACHE": "False", "REQUEST": "read", "SQLS": [5]}
        refused = client.post("/batch", json=uncached)
        assert (refused.status_code, refused.json()["statusCode"]) == (429, 429)
        assert client.get("/heroes/1").status_code == 404  # from the cache: served
        reader = make_key(settings.database_url, "read")
        with_reader = with_key(reader) | fresh
        assert [client.get("/heroes/1", headers=with_reader).status_code for _ in range(5)] == [
            404
        ] * 5


def test_an_ipv6_client_is_limited_per_64(tmp_path: object) -> None:
    """Each host gets a /64 at least: per address, one client would have 2**64 buckets."""
    settings = settings_for(
        "sqlite",
        "memory",
        tmp_path,
        rate_limit_per_address=1,
        rate_limit_burst_seconds=2,
        trusted_proxy_hops=1,
    )
    for client in anonymous(settings):
        forwarded = [
            client.get("/heroes", headers={"X-Forwarded-For": address}).status_code
            for address in (
                "2001:db8:1:2::1",
                "2001:db8:1:2::2",
                "2001:db8:1:2:ffff::3",  # one /64: two in the burst, the third limited
                "2001:db8:1:3::1",  # another /64
                "::ffff:192.0.2.7",  # an IPv4-mapped address is that IPv4 client
                "192.0.2.7",
                "192.0.2.7",
            )
        ]
        assert forwarded == [200, 200, 429, 200, 200, 200, 429]
