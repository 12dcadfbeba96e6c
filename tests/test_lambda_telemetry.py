"""In Lambda: JSON log lines with API Gateway's request id, and the metrics as CloudWatch
Embedded Metric Format, driven by real event payloads through the real handler."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import make_key, settings_for
from tests.test_aws_lambda import (
    JSON_HEADERS,
    Context,
    http_v2,
    invoke,
    lambda_runtime,
    rest_v1,
)
from twotier import aws_lambda
from twotier.aws_lambda import Runtime

HERO = {"name": "Ada", "hero": "Captain Ada", "power": "math", "xp": 42, "color": "blue"}
UNITS = {"Count", "Milliseconds", "None"}


@pytest.fixture
def runtime(capsys: pytest.CaptureFixture[str], tmp_path: object) -> Iterator[Runtime]:
    """A cold start inside the test, so that its stdout is the one captured."""
    with lambda_runtime(settings_for("mysql", "redis", tmp_path, access_log=True)) as made:
        # A fresh function's first flush would carry everything counted since it started;
        # in this process that includes other tests' traffic.
        made.metrics.documents()
        yield made


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out
    parsed = [json.loads(line) for line in out.splitlines() if line.strip()]
    return parsed  # every line is JSON: json.loads raised otherwise


def emf(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in documents if "_aws" in d]


def check_emf_shape(document: dict[str, Any]) -> None:
    """What CloudWatch checks before it extracts metrics from a log event."""
    meta = document["_aws"]
    assert isinstance(meta["Timestamp"], int)
    for directive in meta["CloudWatchMetrics"]:
        assert directive["Namespace"] == "twotier"
        for dimension_set in directive["Dimensions"]:
            assert len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(document[name], str), name
        for metric in directive["Metrics"]:
            assert metric["Unit"] in UNITS
            value = document[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= 100
            assert all(isinstance(v, int | float) for v in values)


def total(documents: list[dict[str, Any]], metric: str, **dimensions: str) -> float:
    summed = 0.0
    for document in documents:
        if metric in document and all(document.get(k) == v for k, v in dimensions.items()):
            value = document[metric]
            summed += len(value) if isinstance(value, list) else value
    return summed


def test_requests_log_json_lines_and_emit_emf(
    runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    started = lines(capsys)
    assert any(line.get("message") == "started" for line in started)

    key = make_key(runtime.settings.database_url, "write")
    created = invoke(
        http_v2(
            "POST",
            "/heroes",
            "/heroes",
            body=json.dumps(HERO).encode(),
            headers=JSON_HEADERS | {"X-API-Key": key},
        )
    )
    hero_id = json.loads(created["body"])["id"]
    lines(capsys)  # the creation's own output

    route = "/heroes/{hero_id}"
    for _ in range(2):
        invoke(http_v2("GET", f"/heroes/{hero_id}", route, path_parameters={"hero_id": "1"}))
    invoke(rest_v1("GET", f"/heroes/{hero_id + 1}", route))
    output = lines(capsys)

    access = [line for line in output if line.get("logger") == "twotier.access"]
    assert [line["request_id"] for line in access] == [
        "JKJaXmPLvHcESHA=",  # requestContext.requestId of the v2 events
        "JKJaXmPLvHcESHA=",
        "e0a8bd4e-0000-4000-8000-0123456789ab",  # and of the v1 event
    ]
    assert [(line["status"], line["cache"]) for line in access] == [
        (200, "HIT"),
        (200, "HIT"),
        (404, "MISS"),
    ]
    assert all(line["route"] == route and line["client"] == "203.0.113.7" for line in access)

    documents = emf(output)
    assert documents, "no EMF documents"
    for document in documents:
        check_emf_shape(document)
    assert total(documents, "CacheHits", Operation="read") == 2
    assert total(documents, "CacheMisses", Operation="read") == 1
    assert total(documents, "Requests", Route=route, Status="200", Method="GET") == 2
    assert total(documents, "Requests", Route=route, Status="404", Method="GET") == 1
    assert total(documents, "RequestDuration", Route=route, Method="GET") == 3  # values
    assert total(documents, "DatabaseQueryDuration") == 1  # the miss
    # The alarms read the totals: each figure is also published without dimensions.
    hits = [d for d in documents if "CacheHits" in d]
    assert all([] in d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for d in hits)
    assert total(documents, "CircuitBreakerState", State="closed") >= 1


def test_direct_seed_invocations_are_logged_and_counted(
    runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    lines(capsys)
    answer = aws_lambda.handler(
        {"USE_CACHE": "True", "REQUEST": "write", "SQLS": [["Bo", "Bolt", "speed", 7, "red"]]},
        Context(),
    )
    assert answer == {"statusCode": 200, "body": "write success"}
    output = lines(capsys)
    [access] = [line for line in output if line.get("logger") == "twotier.access"]
    assert access["request_id"] == Context.aws_request_id
    assert (access["route"], access["request"], access["status"]) == ("seed-event", "write", 200)
    assert access["db_queries"] == 1
    assert total(emf(output), "Requests", Route="seed-event", Status="200") == 1
