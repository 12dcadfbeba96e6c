"""What careless and hostile clients cannot do: exhaust memory, inflate metrics, get a 500,
pick their rate-limit address, hold the server with slow bodies (issue 11's findings, each
with its reproduction turned into a test)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import TIERS, serve
from tests.api.test_observability import scrape
from tests.conftest import settings_for

MIB = 1024 * 1024


@pytest.fixture(params=TIERS, ids=["+".join(t) for t in TIERS])
def small_caches(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[TestClient]:
    """An app whose in-process caches (the memory cache, or the near-cache) hold 1 MiB."""
    store_kind, cache_kind = request.param
    yield from serve(
        settings_for(
            store_kind, cache_kind, tmp_path, cache_max_bytes=MIB, near_cache_max_bytes=MIB
        )
    )


@pytest.fixture
def plain(tmp_path: object) -> Iterator[TestClient]:
    """The embedded default with the default settings."""
    yield from serve(settings_for("sqlite", "memory", tmp_path))


def test_distinct_list_queries_stay_within_the_byte_bound(
    small_caches: TestClient, request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.params["small_caches"][0] == "dynamodb":
        pytest.skip("the cache's bound, whatever the store: 100 scans on moto take 30 s")
    heroes = [
        {"name": f"n{i}", "hero": "h" * 20, "power": "p" * 20, "xp": i, "color": "c" * 20}
        for i in range(300)
    ]
    for start in range(0, 300, 100):  # DynamoDB's transactions: 100 rows at most
        batch = heroes[start : start + 100]
        written = small_caches.post(
            "/batch", json={"USE_CACHE": "True", "REQUEST": "write", "SQLS": batch}
        )
        assert written.status_code == 200, written.text
    # The reproduction, scaled down: pages of ~30 KB, 100 distinct queries, 3 MB in all.
    for after in range(100):
        page = small_caches.get("/heroes", params={"after": after, "limit": 300})
        assert page.status_code == 200
    held = {
        name: value
        for (name, _), value in scrape(small_caches).items()
        if name.endswith("_cache_bytes")
    }
    assert len(held) == 1, held  # the memory cache, or the near-cache in front of Redis
    [(name, value)] = held.items()
    assert 0 < value <= MIB, (name, value)


def test_random_methods_cannot_inflate_metrics(embedded: TestClient) -> None:
    import random

    before = len(embedded.get("/metrics").content)
    rng = random.Random(7)
    for _ in range(300):
        method = f"M{rng.randrange(10**9)}"
        assert embedded.request(method, "/x").status_code == 404  # no such path, any method
        embedded.request(method, "/heroes/1")
    samples = scrape(embedded)
    methods = {
        dict(labels).get("method")
        for (name, labels), _ in samples.items()
        if name.startswith(("twotier_requests", "twotier_request_duration"))
    }
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    assert "other" in methods
    # Two routes' worth of new series at most, not one per method sent.
    assert len(embedded.get("/metrics").content) < before + 20_000


@pytest.mark.parametrize(
    ("lines", "outcome"),
    [
        (["NO-CACHE"], "BYPASS"),
        (["No-Store"], "BYPASS"),
        (["max-age=0, No-Cache"], "BYPASS"),
        (["max-age=0", "no-cache"], "BYPASS"),  # two header lines are one list
        (['no-cache="set-cookie"'], "BYPASS"),
        (["max-age=60"], "HIT"),
        (["no-cache-please"], "HIT"),  # not the directive
    ],
)
def test_cache_control_is_read_alike_on_every_route(
    embedded: TestClient, lines: list[str], outcome: str
) -> None:
    hero = {"name": "A", "hero": "B", "power": "C", "xp": 1, "color": "D"}
    hero_id = embedded.post("/heroes", json=hero).json()["id"]
    embedded.get("/heroes", params={"xp": 1})  # cached
    headers = [("Cache-Control", line) for line in lines]
    for path in (f"/heroes/{hero_id}", "/heroes?xp=1"):  # the hot path, then a route
        response = embedded.get(path, headers=headers)
        assert (response.status_code, response.headers["x-cache"]) == (200, outcome), path


def test_rate_limits_read_every_x_forwarded_for_line(tmp_path: object) -> None:
    settings = settings_for(
        "sqlite",
        "memory",
        tmp_path,
        rate_limit_per_address=0.01,  # a burst of 3, then one more each 100 s
        rate_limit_burst_seconds=300,
        trusted_proxy_hops=1,
    )
    for client in serve(settings, role=None):
        statuses = [
            client.get(
                "/heroes",
                # The client's own line first, then the one the proxy added.
                headers=[("X-Forwarded-For", f"10.0.0.{n}"), ("X-Forwarded-For", "192.0.2.7")],
            ).status_code
            for n in range(6)
        ]
        assert statuses[:3] == [200, 200, 200]
        assert statuses[3:] == [429, 429, 429]
        # Another address the proxy names has a bucket of its own.
        other = client.get("/heroes", headers={"X-Forwarded-For": "10.0.0.1, 192.0.2.8"})
        assert other.status_code == 200


SECURITY_HEADERS = ("x-request-id", "content-security-policy", "x-content-type-options")
BIG = "9" * 5000


@pytest.mark.parametrize(
    ("event", "detail"),
    [
        ({"REQUEST": "write", "SQLS": [["a", "h", "p", "²", "c"]]}, "SQLS.0.xp"),
        ({"REQUEST": "write", "SQLS": [["a", "h", "p", "①", "c"]]}, "SQLS.0.xp"),
        ({"REQUEST": "write", "SQLS": [["a", "h", "p", BIG, "c"]]}, "less than or equal"),
        ({"REQUEST": "read", "SQLS": [BIG]}, "SQLS.0: Input should be less than or equal"),
        ({"REQUEST": "read", "SQLS": ["٣"]}, "SQLS.0"),  # an Arabic-Indic digit
        ({"REQUEST": "read", "SQLS": ["12345678901"]}, "less than or equal"),
    ],
)
def test_strange_numbers_in_a_batch_are_400(
    plain: TestClient, event: dict[str, object], detail: str
) -> None:
    response = plain.post("/batch", json={"USE_CACHE": "True", **event})
    assert response.status_code == 400, response.text
    said = response.json()["body"]["detail"]
    assert detail in said
    assert "set_int_max_str_digits" not in said
    for name in SECURITY_HEADERS:
        assert name in response.headers
    assert plain.get("/heroes").json()["items"] == []  # nothing written


def test_a_huge_json_number_is_400(plain: TestClient) -> None:
    for path, body in [
        ("/batch", '{"USE_CACHE": "True", "REQUEST": "read", "SQLS": [' + BIG + "]}"),
        ("/heroes", '{"name":"a","hero":"h","power":"p","color":"c","xp":' + BIG + "}"),
    ]:
        response = plain.post(path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert response.json()["detail"].startswith("malformed JSON body")


def test_a_bug_still_answers_json_with_the_request_id_and_headers(
    embedded: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = embedded.app.state.service.resource("heroes")  # type: ignore[attr-defined]

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug")

    for name in ("read", "find", "lookup"):
        monkeypatch.setattr(policy, name, broken)
    for method, path, body in [
        ("GET", "/heroes/1", None),  # the hot path
        ("GET", "/heroes", None),  # a route
        ("POST", "/batch", {"USE_CACHE": "True", "REQUEST": "read", "SQLS": [1]}),
    ]:
        response = embedded.request(method, path, json=body)
        assert response.status_code == 500
        assert response.json() == {"detail": "internal server error"}
        for name in SECURITY_HEADERS:
            assert name in response.headers, (path, name)


def test_the_repeated_value_batch_is_refused(plain: TestClient) -> None:
    two = [["a", "h", "p", 4242, "c"], ["b", "h", "p", 4242, "c"]]
    plain.post("/batch", json={"USE_CACHE": "True", "REQUEST": "write", "SQLS": two})
    event = {"USE_CACHE": "True", "REQUEST": "read", "SQLS": [4242] * 10_000}
    for use_cache in ("True", "False"):
        response = plain.post("/batch", json=event | {"USE_CACHE": use_cache})
        assert response.status_code == 400
        assert "more than 10000 rows (TWOTIER_BATCH_MAX_ROWS)" in response.text
    # The seed grader's size (10 values) is well inside.
    fine = plain.post("/batch", json=event | {"SQLS": [4242] * 10})
    assert (fine.status_code, len(fine.json()["body"])) == (200, 20)


def test_a_new_row_is_never_hidden_behind_an_old_tombstone(client: TestClient) -> None:
    hero = {"name": "A", "hero": "B", "power": "C", "xp": 1, "color": "D"}
    client.post("/heroes", json=hero)
    highest = client.post("/heroes", json=hero).json()["id"]
    client.get(f"/heroes/{highest}")
    assert client.delete(f"/heroes/{highest}").status_code == 204
    assert client.get(f"/heroes/{highest}").status_code == 404  # the tombstone, cached
    created = client.post("/heroes", json=hero | {"name": "New"})
    new_id = created.json()["id"]
    assert new_id != highest  # ids are never handed out twice
    read = client.get(f"/heroes/{new_id}")
    assert (read.status_code, read.json()["name"]) == (200, "New")
    assert client.patch(f"/heroes/{new_id}", json={"name": "Newer"}).status_code == 200
    assert client.get(f"/heroes/{new_id}").json()["name"] == "Newer"


HOSTILE_NAMES = ["\u001b[2J\u001b]0;pwned\u0007", "tab\there", "rtl\u202eevil", "bell\u0085"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_key_names_with_control_characters_are_refused(embedded: TestClient, name: str) -> None:
    response = embedded.post("/admin/keys", json={"name": name, "role": "read"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "name"]
    listed = embedded.get("/admin/keys").json()
    assert all(key["name"] != name for key in listed)


def test_operators_terminals_show_names_escaped(tmp_path: Path) -> None:
    import asyncio
    from datetime import UTC, datetime

    from tests.test_cli_and_server import environment, run
    from twotier.access.keys import KeyRecord, Role, new_key
    from twotier.store.sql import SQLStore

    settings = settings_for("sqlite", "memory", tmp_path)
    env = environment(settings)
    refused = run(["keys", "create", "--name", HOSTILE_NAMES[0]], env, tmp_path)
    assert refused.returncode == 2
    assert "cannot hold control" in refused.stderr

    async def store_one_unchecked() -> None:  # as a key stored before names were checked
        store = SQLStore(settings.database_url)
        try:
            await store.init_schema()
            key_id, _token, secret_hash = new_key()
            name = HOSTILE_NAMES[0] + "[red]markup[/red]"
            await store.add_key(KeyRecord(key_id, name, Role.READ, secret_hash, datetime.now(UTC)))
        finally:
            await store.close()

    asyncio.run(store_one_unchecked())
    listed = run(["keys", "list"], env | {"COLUMNS": "200"}, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "\x1b" not in listed.stdout
    assert "\x07" not in listed.stdout
    assert "\\x1b[2J\\x1b]0;pwned\\x07[red]markup[/red]" in listed.stdout


def test_head_works_on_every_get_route(embedded: TestClient) -> None:
    hero = {"name": "A", "hero": "B", "power": "C", "xp": 1, "color": "D"}
    hero_id = embedded.post("/heroes", json=hero).json()["id"]
    paths = [
        "/healthz",
        "/readyz",
        f"/heroes/{hero_id}",  # the hot path
        f"/heroes/{hero_id + 1}",  # a 404
        "/heroes/abc",  # a 422 from the route
        "/heroes?xp=1",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/admin/keys",
    ]
    spec = embedded.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        if "get" in operations and "{" not in path:
            assert any(p.split("?")[0] == path for p in paths), f"{path} is not tried"
    for path in paths:
        got = embedded.get(path)
        head = embedded.head(path)
        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        if path != "/metrics":  # its own size changes from one scrape to the next
            assert head.headers["content-length"] == got.headers["content-length"], path
        for name in ("content-type", "etag", "x-cache", "x-request-id"):
            assert (name in head.headers) == (name in got.headers), (path, name)
    counted = {
        dict(labels)["route"]
        for (name, labels), _ in scrape(embedded).items()
        if name == "twotier_requests_total" and dict(labels)["method"] == "HEAD"
    }
    assert "/heroes/{hero_id}" in counted


def test_a_key_revoked_over_http_stops_at_once_and_new_secrets_are_not_stored(
    tmp_path: object,
) -> None:
    settings = settings_for("sqlite", "memory", tmp_path, api_key_refresh=3600)
    for client in serve(settings):  # with an admin key
        made = client.post("/admin/keys", json={"name": "ci", "role": "write"})
        assert made.status_code == 201
        assert made.headers["cache-control"] == "no-store"
        key = {"X-API-Key": made.json()["key"]}
        hero = {"name": "A", "hero": "B", "power": "C", "xp": 1, "color": "D"}
        assert client.post("/heroes", json=hero, headers=key).status_code == 201
        revoked = client.delete(f"/admin/keys/{made.json()['id']}")
        assert revoked.status_code == 204
        assert client.post("/heroes", json=hero, headers=key).status_code == 401


def test_readiness_names_the_tier_but_not_its_address_to_anonymous_callers(
    tmp_path: object,
) -> None:
    from twotier.bench.target import free_port

    port = free_port()
    settings = settings_for("sqlite", "memory", tmp_path).model_copy(
        update={"cache_url": f"redis://127.0.0.1:{port}/0", "cache_timeout": 0.2}
    )
    for client in serve(settings):  # with an admin key
        anonymous = client.get("/readyz", headers={"X-API-Key": ""})
        assert anonymous.status_code == 503
        assert anonymous.json() == {
            "detail": "not ready: cache",
            "database": "ok",
            "cache": "unavailable",
        }
        assert str(port) not in anonymous.text
        detailed = client.get("/readyz").json()
        assert str(port) in detailed["cache"]


def test_readiness_is_checked_at_most_once_a_second(tmp_path: object) -> None:
    """/readyz is open to anyone and each check is a round trip to each tier: any number of
    probes within a second cost one check, whose answer they share."""
    settings = settings_for("sqlite", "memory", tmp_path)
    for client in serve(settings, role=None):
        _probed_fifty_times(client)


def _probed_fifty_times(client: TestClient) -> None:
    store = client.app.state.service.store  # type: ignore[attr-defined]
    pings = []
    real = store.ping

    async def counted() -> None:
        pings.append(time.monotonic())
        await real()

    store.ping = counted
    answers = [client.get("/readyz").status_code for _ in range(50)]
    assert answers == [200] * 50
    assert len(pings) <= 2, pings  # one check, or two if a second turned meanwhile
    time.sleep(1.1)
    client.get("/readyz")
    assert len(pings) >= 2
