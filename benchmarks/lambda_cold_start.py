"""What a Lambda cold start costs: a fresh Python process imports the handler and answers
its first event, against the seed's own handler (PyMySQL + redis-py, ``peers/seed_lambda.py``)
doing the same in a process of its own, on the same MariaDB and Redis.

    .venv/bin/python benchmarks/lambda_cold_start.py [--runs 15] [--out DIR]

Each subject runs ``--runs`` times, alternating, each time in a new interpreter, and reports
the median of: the import of the handler's module, the first event (for twotier: the
container's set-up, its pools and the schema check, then the answer), and the process's
whole life from ``exec`` to the answer (the interpreter's own start-up included, the same
for every subject). The ratio is twotier's whole life over the seed's. With ``--out``, the
figures go to ``cold-start.json`` and ``python -X importtime``'s report of the handler to
``importtime.txt``.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HERO = {"name": "Cold", "hero": "Start", "power": "speed", "xp": 1, "color": "blue"}

#: Each subject: the module its handler lives in, and the first event it answers.
SUBJECTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "seed: write event": ("seed_lambda", "lambda_handler", {
        "USE_CACHE": "True", "REQUEST": "write", "SQLS": [HERO],
    }),
    "twotier: write event": ("twotier.aws_lambda", "handler", {
        "USE_CACHE": "True", "REQUEST": "write", "SQLS": [HERO],
    }),
    "twotier: read event": ("twotier.aws_lambda", "handler", {
        "USE_CACHE": "True", "REQUEST": "read", "SQLS": [1],
    }),
    "twotier: API Gateway v2 GET": ("twotier.aws_lambda", "handler", {
        "version": "2.0", "routeKey": "$default", "rawPath": "/heroes/1", "rawQueryString": "",
        "headers": {"host": "api.example.com"}, "isBase64Encoded": False,
        "requestContext": {
            "http": {"method": "GET", "path": "/heroes/1", "protocol": "HTTP/1.1",
                     "sourceIp": "192.0.2.1", "userAgent": "bench"},
            "requestId": "cold", "stage": "$default",
        },
    }),
    "twotier: API Gateway v1 POST": ("twotier.aws_lambda", "handler", {
        "resource": "/{proxy+}", "path": "/heroes", "httpMethod": "POST",
        "headers": {"host": "api.example.com", "content-type": "application/json"},
        "multiValueHeaders": {}, "queryStringParameters": None,
        "multiValueQueryStringParameters": None, "pathParameters": {"proxy": "heroes"},
        "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": "POST", "path": "/heroes",
                           "requestId": "cold", "stage": "prod",
                           "identity": {"sourceIp": "192.0.2.1"}},
        "body": json.dumps(HERO), "isBase64Encoded": False,
    }),
}  # fmt: skip

#: What runs in the fresh interpreter: the times are its own, printed as one JSON line.
CHILD = """
import json, sys, time
began = time.perf_counter()
import {module} as subject
imported = time.perf_counter()
answer = subject.{handler}(json.loads(sys.argv[1]), None)
answered = time.perf_counter()
status = answer.get("statusCode") if isinstance(answer, dict) else None
print(json.dumps({{"import": imported - began, "first_event": answered - imported,
                  "status": status}}))
"""


def _environment(database: str, cache: str) -> dict[str, str]:
    return {
        **os.environ,
        # the peers' folder, before any tree the caller names (an empty entry would add the
        # working directory)
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(HERE / "peers"), os.environ.get("PYTHONPATH")])
        ),
        # the seed's handler (common.py)
        "PEER_DATABASE_URL": database.replace("mysql://", "mysql+pymysql://", 1),
        "PEER_REDIS_URL": cache,
        "PEER_PREFIX": "coldstart",
        # twotier's: as a function would be configured, writes open (the seed's are)
        "TWOTIER_DATABASE_URL": database,
        "TWOTIER_CACHE_URL": cache,
        "TWOTIER_REQUIRE_KEY_FOR_WRITES": "false",
        "TWOTIER_ACCESS_LOG": "false",
        "TWOTIER_LOG_LEVEL": "WARNING",
        "PYDANTIC_DISABLE_PLUGINS": "__all__",  # as the CDK stack sets it
    }


def _once(subject: str, environment: dict[str, str]) -> dict[str, float]:
    module, handler, event = SUBJECTS[subject]
    code = CHILD.format(module=module, handler=handler)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(event)],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    whole = time.perf_counter() - started
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if figures["status"] not in (200, 201):
        raise SystemExit(f"{subject}: answered {figures['status']}: {done.stdout}{done.stderr}")
    return {"import": figures["import"], "first_event": figures["first_event"], "whole": whole}


def _prepare(database: str, environment: dict[str, str]) -> None:
    """The bench's own database, its table made by ``twotier db init`` (the seed's DDL)."""
    import pymysql

    sys.path.insert(0, str(HERE / "peers"))
    from common import mysql_params

    params = mysql_params(database)
    name = params.pop("db")
    with pymysql.connect(**params) as connection:
        connection.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{name}`")
    twotier = Path(sys.executable).with_name("twotier")
    subprocess.run([twotier, "db", "init"], env=environment, check=True, capture_output=True)
    # The zip carries its bytecode (infra/build_lambda.py); a tree run from its sources,
    # under PYTHONDONTWRITEBYTECODE, would compile every module on every start instead.
    package = subprocess.run(
        [sys.executable, "-c", "import os, twotier; print(os.path.dirname(twotier.__file__))"],
        env=environment, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    for folder in (package, str(HERE / "peers")):
        compileall.compile_dir(folder, quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="mysql://root@127.0.0.1:3306/twotier_coldstart")
    parser.add_argument("--cache", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--out", type=Path)
    options = parser.parse_args()
    environment = _environment(options.database, options.cache)
    _prepare(options.database, environment)
    samples: dict[str, list[dict[str, float]]] = {subject: [] for subject in SUBJECTS}
    for _ in range(options.runs):
        for subject in SUBJECTS:
            samples[subject].append(_once(subject, environment))
    report: dict[str, dict[str, float]] = {}
    for subject, runs in samples.items():
        report[subject] = {
            part: statistics.median(run[part] for run in runs)
            for part in ("import", "first_event", "whole")
        }
    seed = report["seed: write event"]["whole"]
    heading = f"median of {options.runs}"
    print(f"{heading:<30} {'import':>8} {'1st event':>10} {'whole':>8} {'/ seed':>7}")
    for subject, figures in report.items():
        figures["ratio"] = figures["whole"] / seed
        ms = {part: f"{figures[part] * 1000:.0f}ms" for part in ("import", "first_event", "whole")}
        print(
            f"{subject:<30} {ms['import']:>8} {ms['first_event']:>10} {ms['whole']:>8}"
            f" {figures['ratio']:>7.2f}"
        )
    if options.out:
        options.out.mkdir(parents=True, exist_ok=True)
        (options.out / "cold-start.json").write_text(json.dumps(report, indent=2) + "\n")
        imports = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import twotier.aws_lambda"],
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
        (options.out / "importtime.txt").write_text(imports.stderr)


if __name__ == "__main__":
    main()
