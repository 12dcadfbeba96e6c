"""Schemathesis against the app's own /openapi.json, over HTTP, on a real server.

Every operation gets generated valid requests (which must be accepted) and invalid ones
(which must be rejected with a 4xx): no answer may be a 5xx, and every answer must match
the documented schema (status, content type, headers, body).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from tests.conftest import DECLARED, database_url
from twotier.bench.target import Target


@pytest.fixture(scope="module", params=["built-in", "declared"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """A server of the built-in heroes, and one of the tests' declared resources (a text
    key, every field type, nullable fields and defaults)."""
    work: Path = tmp_path_factory.mktemp("fuzz")
    env = {"TWOTIER_DATABASE_URL": database_url("sqlite", work), "TWOTIER_CACHE_URL": "memory://"}
    if request.param == "declared":
        env["TWOTIER_RESOURCES"] = str(DECLARED)
    with Target(env=env, key_role="admin") as target:
        yield target


@pytest.fixture(scope="module")
def api_schema(target: Target) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{target.url}/openapi.json")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_within_its_schema(
    api_schema: schemathesis.BaseSchema, target: Target, mode: GenerationMode
) -> None:
    # Driven through schemathesis's own API: its pytest plugin does not support pytest 9.
    failures = []
    for result in api_schema.get_all_operations():
        if not isinstance(result, Ok):
            failures.append(f"an operation could not be read: {result}")
            continue
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            if mode is GenerationMode.POSITIVE:
                as_read(case)
            case.call_and_validate(headers=target.headers)

        try:
            check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, operation.label  # no input to get wrong
        except Exception as error:
            failures.append(f"{operation.label}: {error}")
    assert not failures, "\n\n".join(failures)


def as_read(case: Any) -> None:
    """What JSON Schema cannot say, a valid client does. A list's ``after`` is a
    ``next_after`` the server gave (a key, or a cursor of the same query: any other is a
    422, tests/api/test_list_query.py). A PUT or PATCH body may name the row's key (the row
    as GET answers it), and then it is the path's (another key is a 422,
    tests/api/test_parameters.py)."""
    if case.method == "GET" and not case.path_parameters and case.query:
        case.query.pop("after", None)
        for name, value in case.query.items():
            if name.endswith("[in]"):
                # Values separated by commas as in CSV: each in quotes, a quote twice (the
                # generator joins them with commas, each percent-encoded in ``encoded``).
                encoded = getattr(value, "encoded", None)
                items = (
                    [unquote(item) for item in encoded.split(",")]
                    if encoded is not None
                    else list(value)
                    if isinstance(value, list)
                    else [str(value)]
                )
                case.query[name] = ",".join(
                    '"' + str(item).replace('"', '""') + '"' for item in items
                )
    if case.method not in ("PUT", "PATCH") or not isinstance(case.body, dict):
        return
    for parameter, value in (case.path_parameters or {}).items():
        for field in list(case.body):
            if parameter.endswith(f"_{field}"):
                # Generated path values come percent-encoded for the URL.
                case.body[field] = unquote(value) if isinstance(value, str) else value
