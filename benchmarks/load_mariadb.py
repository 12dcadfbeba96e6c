"""Benchmark: `twotier load` vs the `mariadb` client's own LOAD DATA LOCAL INFILE.

Both load the same generated 1,000,000-row file into the same empty table, alternating,
several rounds; the figure is the ratio of the medians (twotier / client). Whole commands
are timed, as a user runs them (twotier's includes Python start-up and validation).

    .venv/bin/python benchmarks/load_mariadb.py [--rows 1000000] [--rounds 3]

Needs MariaDB on 127.0.0.1:3306 (root, no password). Writes benchmarks/results/load-mariadb.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

DATABASE = "twotier_loadbench"
TWOTIER = str(Path(sys.executable).with_name("twotier"))
HERE = Path(__file__).parent


def sql(statement: str) -> None:
    subprocess.run(
        ["mariadb", "--protocol=tcp", "-h127.0.0.1", "-uroot", DATABASE, "-e", statement],
        check=True,
    )


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    env = os.environ | {
        "TWOTIER_DATABASE_URL": f"mysql://root@127.0.0.1:3306/{DATABASE}",
        "TWOTIER_CACHE_URL": "memory://",
    }
    with tempfile.TemporaryDirectory() as work:
        data = Path(work) / "mp6data.csv"
        subprocess.run(
            [TWOTIER, "generate", "--rows", str(args.rows), str(data)],
            check=True,
            capture_output=True,
        )
        subprocess.run([TWOTIER, "db", "init"], check=True, env=env, capture_output=True)
        client = [
            "mariadb",
            "--protocol=tcp",
            "--local-infile=1",
            "-h127.0.0.1",
            "-uroot",
            DATABASE,
            "-e",
            f"LOAD DATA LOCAL INFILE '{data}' INTO TABLE superheroes FIELDS TERMINATED BY ',' "
            "OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\\n' IGNORE 1 LINES "
            "(id, name, hero, power, xp, color)",
        ]
        ours = [TWOTIER, "load", str(data)]
        times: dict[str, list[float]] = {"mariadb client": [], "twotier load": []}
        for round_number in range(args.rounds):
            for name, command in (("mariadb client", client), ("twotier load", ours)):
                sql("TRUNCATE TABLE superheroes")
                seconds = timed(command, env)
                times[name].append(seconds)
                print(f"round {round_number + 1}: {name}: {seconds:.2f} s", flush=True)
        sql("TRUNCATE TABLE superheroes")
    subprocess.run(
        ["mariadb", "--protocol=tcp", "-h127.0.0.1", "-uroot", "-e", f"DROP DATABASE {DATABASE}"],
        check=True,
    )

    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["twotier load"] / medians["mariadb client"]
    print(
        f"median: client {medians['mariadb client']:.2f} s, "
        f"twotier {medians['twotier load']:.2f} s, ratio {ratio:.2f}x (target <= 1.5x)"
    )
    result = {
        "benchmark": "twotier load vs the mariadb client's LOAD DATA LOCAL INFILE",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "rows": args.rows,
        "seconds": times,
        "median_seconds": medians,
        "ratio": round(ratio, 3),
    }
    out = HERE / "results" / "load-mariadb.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
