"""Operating the API: /metrics counts known traffic exactly; every request gets an id, one
access log line and the security headers."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import serve
from tests.api.test_heroes_api import create
from tests.conftest import settings_for
from twotier.logs import BufferedStdoutHandler, JsonFormatter, log_fields, log_fields_later

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
HERO_ROUTE = "/heroes/{hero_id}"


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def added(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_count_known_traffic_exactly(
    client: TestClient, request: pytest.FixtureRequest
) -> None:
    hero_id = create(client)["id"]
    before = scrape(client)
    for _ in range(5):
        assert client.get(f"/heroes/{hero_id}").headers["x-cache"] == "HIT"  # written through
    assert client.get(f"/heroes/{hero_id + 1}").status_code == 404  # a miss, then cached absent
    client.get(f"/heroes/{hero_id}", headers={"Cache-Control": "no-cache"})  # a bypass
    assert client.get("/heroes", params={"xp": 5}).headers["x-cache"] == "MISS"
    assert client.get("/nowhere").status_code == 404
    after = scrape(client)

    def requests(route: str, status: str, method: str = "GET") -> float:
        return added(
            before, after, "twotier_requests_total", route=route, method=method, status=status
        )

    assert requests(HERO_ROUTE, "200") == 6
    assert requests(HERO_ROUTE, "404") == 1
    assert requests("/heroes", "200") == 1
    assert requests("unmatched", "404") == 1
    assert requests("/metrics", "200") == 1  # the first scrape
    duration = "twotier_request_duration_seconds_count"
    assert added(before, after, duration, route=HERO_ROUTE, method="GET") == 7
    for name, operation, count in [
        ("twotier_cache_hits_total", "read", 5),
        ("twotier_cache_misses_total", "read", 1),
        ("twotier_cache_bypasses_total", "read", 1),
        ("twotier_cache_misses_total", "list", 1),
    ]:
        assert added(before, after, name, resource="heroes", operation=operation) == count, (
            name,
            operation,
        )
    assert added(before, after, "twotier_cache_errors_total", operation="read") == 0
    # The read miss, the bypass and the list.
    assert added(before, after, "twotier_database_query_duration_seconds_count") == 3
    assert after[("twotier_circuit_breaker_state", frozenset({("state", "closed")}))] == 1
    assert after[("twotier_circuit_breaker_state", frozenset({("state", "open")}))] == 0
    assert after[("twotier_cache_pending_invalidations", frozenset())] == 0
    pool = {
        dict(labels)["state"]: value
        for (name, labels), value in after.items()
        if name == "twotier_database_pool_connections"
    }
    assert set(pool) == {"in_use", "idle"}
    assert pool["in_use"] == 0  # every request done: each gave its connection back
    assert pool["idle"] >= 1
    in_process = {name: value for (name, _), value in after.items() if name.endswith("entries")}
    # The in-process cache, or the near-cache in front of Redis: both hold the hero and
    # the absent one.
    expected = "memory" if request.node.callspec.id.endswith("memory") else "near"
    assert in_process == {
        f"twotier_{expected}_cache_entries": in_process.get(f"twotier_{expected}_cache_entries", -1)
    }
    assert in_process[f"twotier_{expected}_cache_entries"] >= 2


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger="twotier.access"):
        yield caplog


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "twotier.access"]


def test_one_access_line_per_request_with_its_id(
    embedded: TestClient, logged: pytest.LogCaptureFixture
) -> None:
    hero_id = create(embedded)["id"]
    logged.clear()
    given = embedded.get(f"/heroes/{hero_id}", headers={"X-Request-Id": "client-id-1"})
    made = embedded.get(f"/heroes/{hero_id + 1}")
    unsafe = embedded.get("/heroes", headers={"X-Request-Id": "bad id\twith spaces"})
    assert given.headers["x-request-id"] == "client-id-1"
    assert len(made.headers["x-request-id"]) == 32  # generated: 32 hex digits
    assert unsafe.headers["x-request-id"] not in ("", "bad id\twith spaces")

    lines = access_lines(logged)
    assert [r.request_id for r in lines] == [  # type: ignore[attr-defined]
        "client-id-1",
        made.headers["x-request-id"],
        unsafe.headers["x-request-id"],
    ]
    first = json.loads(JsonFormatter().format(lines[0]))
    assert first["message"] == "request"
    assert first["level"] == "INFO"
    assert first["logger"] == "twotier.access"
    assert (first["method"], first["route"], first["status"], first["cache"]) == (
        "GET",
        HERO_ROUTE,
        200,
        "HIT",
    )
    assert first["path"] == f"/heroes/{hero_id}"
    assert first["resource"] == "heroes"
    assert first["latency_ms"] > 0
    assert (first["db_ms"], first["db_queries"]) == (0, 0)  # a hit asks no database
    miss = json.loads(JsonFormatter().format(lines[1]))
    assert (miss["status"], miss["cache"], miss["db_queries"]) == (404, "MISS", 1)
    assert miss["db_ms"] > 0
    assert json.loads(JsonFormatter().format(lines[2]))["resource"] == "heroes"  # a list
    logged.clear()
    embedded.get("/healthz")
    embedded.post("/batch", json={"USE_CACHE": "True", "REQUEST": "read", "SQLS": [1]})
    health, seed = (json.loads(JsonFormatter().format(r)) for r in access_lines(logged))
    assert "resource" not in health
    assert (seed["route"], seed["resource"]) == ("/batch", "heroes")


def test_access_log_can_be_turned_off(tmp_path: object, caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for("sqlite", "memory", tmp_path, access_log=False)
    with caplog.at_level(logging.INFO, logger="twotier.access"):
        for client in serve(settings):
            client.get("/healthz")
    assert access_lines(caplog) == []


def test_security_headers_on_api_and_docs(embedded: TestClient) -> None:
    for path in ("/healthz", "/heroes/1", "/heroes/nope", "/nowhere"):
        headers = embedded.get(path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert "strict-transport-security" not in headers  # plain HTTP: HSTS means nothing
    docs = embedded.get("/docs").headers["content-security-policy"]
    assert "script-src 'self'" in docs
    assert "frame-ancestors 'none'" in docs
    behind_tls = embedded.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert behind_tls.headers["strict-transport-security"].startswith("max-age=")


def test_cors_is_off_unless_configured(embedded: TestClient, tmp_path: object) -> None:
    asked = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in embedded.options("/heroes", headers=asked).headers
    settings = settings_for("sqlite", "memory", tmp_path, cors_origins=["https://app.example"])
    for client in serve(settings):
        preflight = client.options(
            "/heroes", headers=asked | {"Access-Control-Request-Headers": "X-API-Key"}
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
        simple = client.get("/healthz", headers={"Origin": "https://app.example"})
        assert simple.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-cache" in simple.headers["access-control-expose-headers"].lower()
        other = client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_json_formatter_keeps_a_traceback_in_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "failed %s", ("x",), exc_info=sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "failed x"
    assert "ValueError: boom" in parsed["error"]
    assert parsed["time"].endswith("Z")


class RecordingStdout(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_buffered_lines_leave_whole_in_pipe_sized_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = RecordingStdout()
    monkeypatch.setattr(sys, "stdout", out)
    handler = BufferedStdoutHandler(interval=3600)  # only size and flush() write
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("twotier.test.buffered")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for n in range(200):
            # Some lines of characters of several bytes each: the pipe counts bytes.
            padding = ("é€𝄞" if n % 3 else "x") * n
            logger.warning("line %d", n, extra={"padding": padding})
        assert out.writes, "a full block is written without waiting"
        handler.flush()
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert all(len(block.encode()) <= BufferedStdoutHandler.BLOCK for block in out.writes)
    assert all(block.endswith("\n") for block in out.writes)  # never half a line
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in lines] == [f"line {n}" for n in range(200)]


def test_the_direct_access_line_is_the_logging_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fields = {"request_id": "r1", "method": "GET", "route": "/x", "status": 200}
    logger = logging.getLogger("twotier.test.direct")
    out = RecordingStdout()
    monkeypatch.setattr(sys, "stdout", out)
    with twotiers_handler_alone() as handler:
        log_fields(logger, "request", fields)
        handler.addFilter(lambda record: True)  # a filter: the LogRecord way
        log_fields(logger, "request", fields)
    direct, through_logging = (json.loads(line) for line in out.getvalue().splitlines())
    assert direct.keys() == through_logging.keys()
    del direct["time"], through_logging["time"]
    assert direct == through_logging


def test_a_deferred_line_is_made_when_written_in_its_place_and_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The access log's lines are made when their block is written (off the request's
    path): each the same line as ``log_fields`` writes, with the time it was asked for,
    in its place among the others; a line whose fields cannot be made is said instead."""
    logger = logging.getLogger("twotier.test.deferred")
    out = RecordingStdout()
    monkeypatch.setattr(sys, "stdout", out)
    made: list[int] = []

    def fields_of(n: int) -> dict[str, Any]:
        made.append(n)
        if n == 3:
            raise ValueError("no fields")
        return {"request_id": f"r{n}", "n": n}

    with twotiers_handler_alone():
        for n in range(5):
            log_fields_later(logger, "request", fields_of, n)
            log_fields(logger, "now", {"request_id": f"r{n}", "n": n})
        assert made == []  # nothing made before the block is written
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["message"], line.get("n")) for line in lines] == [
        pair
        for n in range(5)
        for pair in (
            ("a log line could not be made", None) if n == 3 else ("request", n),
            ("now", n),
        )
    ]
    assert "ValueError('no fields')" in lines[6]["error"]
    deferred, direct = lines[0], lines[1]
    assert deferred["time"] <= direct["time"]  # the moment it was asked for
    assert {**deferred, "message": "now", "time": ""} == {**direct, "time": ""}


@contextmanager
def twotiers_handler_alone() -> Iterator[BufferedStdoutHandler]:
    """twotier's buffered handler as the root's only one (the direct way), at INFO;
    flushed, and the root as it was, when the block ends."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    handler = BufferedStdoutHandler(interval=3600)  # only size and flush() write
    handler.setFormatter(JsonFormatter())
    try:
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        yield handler
        handler.flush()
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        handler.close()
