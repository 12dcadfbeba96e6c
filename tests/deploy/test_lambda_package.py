"""The Lambda zip (make lambda), unpacked into a fresh folder: the handler imports from there
alone and serves real API Gateway v1 and v2 events and a seed batch event against MariaDB
and Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import (
    SERVER_URLS,
    database_url,
    drop_table,
    forget_namespace,
    make_key,
    redis_namespace,
    require,
)
from tests.test_aws_lambda import HERO, http_v2, rest_v1

ROOT = Path(__file__).parents[2]

# Runs in a bare interpreter (-I -S: no site-packages at all), with the package on sys.path.
INVOKE = """
import json, sys
package = sys.argv[1]
sys.path.insert(0, package)
import twotier
assert twotier.__file__.startswith(package), twotier.__file__
from twotier.aws_lambda import handler
answers = [handler(event, None) for event in json.load(sys.stdin)]
with open(sys.argv[2], "w") as out:
    json.dump(answers, out)
"""


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("lambda")
    archive = work / "twotier-lambda.zip"
    build = subprocess.run(
        [sys.executable, str(ROOT / "infra" / "build_lambda.py"), str(archive)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    assert "MB zipped" in build.stdout
    unpacked = work / "unpacked"
    with zipfile.ZipFile(archive) as zipped:
        names = zipped.namelist()
        zipped.extractall(unpacked)
    # Runtime code only: no test or dev tools, no servers, no boto3 (the runtime has it;
    # botocore is there, in the version aiobotocore pins, which the runtime's may not be).
    tops = {name.split("/", 1)[0] for name in names}
    for unwanted in (
        "pytest",
        "mypy",
        "ruff",
        "hypothesis",
        "schemathesis",
        "moto",
        "granian",
        "uvicorn",
        "matplotlib",
        "boto3",
        "tests",
    ):
        assert unwanted not in tops, unwanted
    assert {"twotier", "mangum", "sqlalchemy", "asyncmy", "redis", "aiobotocore"} <= tops
    # Aurora's certificates verified in the function too (?ssl_ca=rds): the bundle is in.
    assert "twotier/store/amazon-rds-ca.pem" in names
    # The bench harness is not the product, nor the PostgreSQL follower's client, nor the
    # models of AWS services twotier never calls.
    assert not [name for name in names if name.startswith(("twotier/bench/", "psycopg2/"))]
    models = {name.split("/")[2] for name in names if name.startswith("botocore/data/")}
    models.discard("")
    assert {"dynamodb", "dynamodbstreams", "secretsmanager", "s3"} <= models
    assert "ec2" not in models
    # Compiled, checked by hash and never by time: the function's file system is read-only,
    # so a module without its bytecode would be compiled again on every cold start.
    if sys.version_info[:2] == (3, 11):
        compiled = unpacked / "twotier" / "__pycache__" / "aws_lambda.cpython-311.pyc"
        flags = int.from_bytes(compiled.read_bytes()[4:8], "little")
        assert flags == 0b01, flags  # hash-based, unchecked
        assert (unpacked / "sqlalchemy" / "engine" / "__pycache__").is_dir()
    assert archive.stat().st_size < 45_000_000  # under Lambda's 50 MB upload limit
    return unpacked


@pytest.mark.parametrize("database", ["mysql", "dynamodb"])
def test_the_unpacked_package_serves_every_kind_of_event(
    package: Path, tmp_path: Path, database: str
) -> None:
    require("redis")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWOTIER_", "PYTHON"))}
    env |= {
        "TWOTIER_DATABASE_URL": database_url(database, tmp_path),
        "TWOTIER_CACHE_URL": SERVER_URLS["redis"],
        "TWOTIER_CACHE_NAMESPACE": redis_namespace(),
    }
    body = json.dumps(HERO).encode()
    drop_table(env["TWOTIER_DATABASE_URL"])
    key = make_key(env["TWOTIER_DATABASE_URL"], "write")
    events = [
        rest_v1(
            "POST",
            "/heroes",
            "/heroes",
            body=body,
            headers={"Content-Type": "application/json", "X-API-Key": key},
            b64=True,
        ),
        http_v2("GET", "/heroes", "/heroes", raw_query="xp=42"),
        {"USE_CACHE": "True", "REQUEST": "write", "SQLS": [HERO | {"name": "batch"}]},
        {"USE_CACHE": "True", "REQUEST": "read", "SQLS": [42]},
        {"USE_CACHE": "True", "REQUEST": "read", "SQLS": ["nope"]},
    ]
    try:
        result = subprocess.run(
            # -B: as on Lambda, where nothing can be written beside the code
            [
                sys.executable,
                "-I",
                "-S",
                "-B",
                "-c",
                INVOKE,
                str(package),
                str(tmp_path / "answers"),
            ],
            input=json.dumps(events),
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        drop_table(env["TWOTIER_DATABASE_URL"])
        forget_namespace(env["TWOTIER_CACHE_URL"], env["TWOTIER_CACHE_NAMESPACE"])
    assert result.returncode == 0, result.stderr
    created, listed, wrote, read, bad = json.loads((tmp_path / "answers").read_text())
    # stdout is the function's CloudWatch log: JSON lines, EMF documents among them.
    logged = [json.loads(line) for line in result.stdout.splitlines()]
    assert sum(line.get("logger") == "twotier.access" for line in logged) == 5
    assert any("_aws" in line and "Requests" in line for line in logged)
    assert created["statusCode"] == 201
    assert listed["statusCode"] == 200
    assert listed["headers"]["x-cache"] in {"HIT", "MISS"}
    assert json.loads(listed["body"])["items"][0]["name"] == "Ada"
    assert wrote == {"statusCode": 200, "body": "write success"}
    assert [row["name"] for row in read["body"]] == ["Ada", "batch"]
    assert bad["statusCode"] == 400
