"""The container image's exact command, run directly (no Docker engine here), smoke-tested
over HTTP against MariaDB and Redis: the same module, flags and environment names."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import (
    SERVER_URLS,
    database_url,
    drop_table,
    forget_namespace,
    make_key,
    redis_namespace,
    require,
)
from twotier.bench.target import free_port

DOCKERFILE = Path(__file__).parents[2] / "infra" / "Dockerfile"


def final_stage() -> list[str]:
    """The Dockerfile's last stage, as logical lines (continuations joined)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return [line for line in lines[last_from:] if not line.startswith("#")]


def image_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in final_stage():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def exec_form(instruction: str) -> list[str]:
    line = next(line for line in final_stage() if line.startswith(instruction + " "))
    argv: list[str] = json.loads(line[len(instruction) + 1 :].strip())
    return argv


def healthcheck() -> list[str]:
    line = next(line for line in final_stage() if line.startswith("HEALTHCHECK "))
    argv: list[str] = json.loads(line[line.index("CMD ") + 4 :])
    return argv


def test_the_image_is_built_the_way_it_should_be() -> None:
    stages = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2  # multi-stage: the build tools stay behind
    assert all("-slim" in stage for stage in stages)
    stage = final_stage()
    assert any(line.startswith("USER ") and "root" not in line for line in stage)
    assert exec_form("CMD")[:2] == ["twotier", "serve"]
    assert "STOPSIGNAL SIGTERM" in stage
    # The bench harness is not the server's: the build stage leaves it out of the venv.
    assert "rm -r /opt/twotier/lib/python3.11/site-packages/twotier/bench" in DOCKERFILE.read_text()


def test_the_image_command_serves_mariadb_and_redis(tmp_path: Path) -> None:
    require("redis")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTIER_")}
    env |= image_environment()
    env["PATH"] = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # where twotier is
    env |= {
        "TWOTIER_PORT": str(port),
        "TWOTIER_HOST": "127.0.0.1",  # the image listens on 0.0.0.0; the test stays on loopback
        "TWOTIER_WORKERS": "2",
        "TWOTIER_DATABASE_URL": database_url("mysql", tmp_path),
        "TWOTIER_CACHE_URL": SERVER_URLS["redis"],
        "TWOTIER_CACHE_NAMESPACE": redis_namespace(),
    }
    drop_table(env["TWOTIER_DATABASE_URL"])
    key = make_key(env["TWOTIER_DATABASE_URL"], "write")
    process = subprocess.Popen(
        exec_form("CMD"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            if subprocess.run(healthcheck(), env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the HEALTHCHECK never passed")
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=10) as client:
            hero = {"name": "Ada", "hero": "Captain Ada", "power": "math", "xp": 5, "color": "b"}
            hero_id = client.post("/heroes", json=hero).json()["id"]
            assert client.get(f"/heroes/{hero_id}").headers["x-cache"] == "HIT"
            client.put(f"/heroes/{hero_id}", json=hero | {"name": "Bea"})
            assert client.get(f"/heroes/{hero_id}").json()["name"] == "Bea"
            assert client.get("/readyz").json() == {"status": "ok", "database": "ok", "cache": "ok"}
            client.delete(f"/heroes/{hero_id}")
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode()
    drop_table(env["TWOTIER_DATABASE_URL"])
    forget_namespace(env["TWOTIER_CACHE_URL"], env["TWOTIER_CACHE_NAMESPACE"])
    assert process.returncode == 0, output
    assert "Traceback" not in output
