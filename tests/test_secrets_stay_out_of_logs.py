"""Passwords and API keys never reach a log line: a real server (and the Lambda runtime)
is given secrets everywhere they can be given, served requests that use and misuse them,
at debug level, and everything it wrote is searched for them."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url

from tests.conftest import database_url, drop_table, make_key, require
from tests.own_servers import OwnRedis
from tests.test_aws_lambda import Context, http_v2, lambda_runtime
from tests.test_cli_and_server import environment, start_server
from twotier.config import Settings

HERO = {"name": "Ada", "hero": "Captain Ada", "power": "math", "xp": 5, "color": "blue"}


class PasswordRedis(OwnRedis):
    """A redis-server of the test's own that wants a password."""

    def __init__(self, workdir: Path, password: str) -> None:
        super().__init__(workdir)
        self.password = password

    def _listen(self) -> list[str]:
        return [*super()._listen(), "--requirepass", self.password]

    def _client_args(self) -> list[str]:
        return ["-a", self.password, "--no-auth-warning"]

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"


@pytest.fixture
def secrets_given(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Settings full of secrets: PostgreSQL (trust auth: any password is taken, and sent)
    and a Redis that checks its password."""
    require("postgres")
    require("redis")
    cache_password = f"cache-{secrets.token_hex(8)}"
    redis = PasswordRedis(tmp_path, cache_password)
    redis.start()
    db_password = f"db-{secrets.token_hex(8)}"
    url = make_url(database_url("postgres", tmp_path)).set(password=db_password)
    db_url = url.render_as_string(hide_password=False)
    drop_table(db_url)
    try:
        yield {
            "db_url": db_url,
            "db_password": db_password,
            "cache_url": redis.url,
            "cache_password": cache_password,
        }
    finally:
        drop_table(db_url)
        redis.kill()


def assert_no_secret(output: str, *secret_values: str) -> None:
    assert output.strip(), "nothing was logged: the test would prove nothing"
    for value in secret_values:
        assert value not in output, f"a secret reached the logs: {value[:6]}…"


def test_a_server_never_logs_a_secret(secrets_given: dict[str, str], tmp_path: Path) -> None:
    settings = Settings(
        database_url=secrets_given["db_url"],
        cache_url=secrets_given["cache_url"],
        cache_namespace="secrets",
    )
    env = environment(settings) | {"TWOTIER_LOG_LEVEL": "debug"}
    key = make_key(settings.database_url, "write")
    forged = key[:-6] + "ZZZZZZ"
    process, url = start_server([], env, tmp_path)
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            hero_id = client.post("/heroes", json=HERO, headers={"X-API-Key": key}).json()["id"]
            client.get(f"/heroes/{hero_id}", headers={"Authorization": f"Bearer {key}"})
            assert (
                client.post("/heroes", json=HERO, headers={"X-API-Key": forged}).status_code == 401
            )
            client.post(
                "/heroes",
                content=b"{not json",
                headers={"X-API-Key": key, "Content-Type": "application/json"},
            )
            client.get(f"/heroes?api_key={key}&password={secrets_given['db_password']}")
            client.get("/readyz")
            client.get("/metrics")
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert sum(line.get("logger") == "twotier.access" for line in lines) >= 7
    assert_no_secret(
        output,
        secrets_given["db_password"],
        secrets_given["cache_password"],
        key,
        key.split("_", 2)[2],  # the secret part alone (it may itself hold "_")
        forged,
    )


def test_the_lambda_runtime_never_logs_a_secret(
    secrets_given: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    settings = Settings(
        database_url=secrets_given["db_url"],
        cache_url=secrets_given["cache_url"],
        cache_namespace="secrets",
        log_level="debug",
    )
    key = make_key(settings.database_url, "write")
    with lambda_runtime(settings) as runtime:
        body = json.dumps(HERO).encode()
        headers = {"X-API-Key": key, "content-type": "application/json"}
        runtime(http_v2("POST", "/heroes", "/heroes", body=body, headers=headers), Context())
        runtime(http_v2("GET", "/heroes", "/heroes", headers={"X-API-Key": key + "x"}), Context())
        runtime({"USE_CACHE": "True", "REQUEST": "read", "SQLS": [5]}, Context())
    output = capsys.readouterr().out
    assert_no_secret(output, secrets_given["db_password"], secrets_given["cache_password"], key)
