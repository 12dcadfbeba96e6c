"""`twotier bench` on tiny data sets: the workloads, both load generators, the outputs.

These check that the bench measures what it says, not how fast anything is.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    DECLARED,
    REQUIRE_SERVICES,
    SERVER_URLS,
    database_url,
    drop_table,
    require,
)
from twotier.bench.runs import seed_events
from twotier.bench.workload import KeyMix, Zipf

TWOTIER = str(Path(sys.executable).with_name("twotier"))
PEERS = Path(__file__).parents[1] / "benchmarks" / "peers"


def test_zipf_is_skewed_in_range_and_deterministic() -> None:
    draws = [Zipf(100, 1.1, random.Random(3))()]
    sampler = Zipf(100, 1.1, random.Random(3))
    counts = Counter(sampler() for _ in range(20_000))
    assert set(counts) <= set(range(1, 101))
    assert counts[1] > counts[2] > counts[10] > counts[100]
    assert draws[0] == Zipf(100, 1.1, random.Random(3))()
    uniform = Counter(Zipf(10, 0.0, random.Random(1))() for _ in range(20_000))
    assert max(uniform.values()) < 1.2 * min(uniform.values())


def test_mixes_render_as_wrk_scripts() -> None:
    script = KeyMix(500, skew=0.9, write_ratio=0.25, bypass=True).lua()
    assert "local n, skew, write_ratio = 500, 0.9, 0.25" in script
    assert '["Cache-Control"] = "no-cache"' in script
    assert "WRKJSON" in script
    stream = KeyMix(50, write_ratio=0.5).requests()
    methods = Counter(stream().method for _ in range(2000))
    assert 800 < methods["PATCH"] < 1200
    assert methods["GET"] + methods["PATCH"] == 2000


def test_seed_events_repeat_hot_values() -> None:
    def make() -> list[list[int]]:
        return seed_events(requests=100, values=10, hot_values=50, xp_max=1000, skew=1.1, seed=0)

    events = make()
    assert events == make()
    counts = Counter(xp for event in events for xp in event)
    assert len(counts) <= 50
    assert len(events) == 100
    assert all(len(e) == 10 for e in events)
    assert counts.most_common(1)[0][1] > 50  # the hottest value comes back again and again


def bench(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTIER_")}
    env["TWOTIER_DATABASE_URL"] = database_url("sqlite", tmp_path)
    env["TWOTIER_RESOURCES"] = str(DECLARED)
    return subprocess.run(
        [TWOTIER, "bench", *args, "--out", str(tmp_path / "out")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("generator", "resource"), [("--no-wrk", "heroes"), ("--wrk", "heroes"), ("--wrk", "products")]
)
def test_http_workload_end_to_end(generator: str, resource: str, tmp_path: Path) -> None:
    if generator == "--wrk":
        require_wrk()
    result = bench(
        [
            "http",
            "--rows",
            "300",
            "--duration",
            "1",
            "--connections",
            "8",
            "--write-ratio",
            "0.1",
            "--resource",
            resource,
            generator,
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "out" / "bench-http.json").read_text())
    phases = {p["name"]: p for p in report["phases"]}
    assert set(phases) == {"baseline", "cached", "uncached"}
    assert report["config"]["generator"] == ("wrk" if generator == "--wrk" else "aiohttp")
    assert report["config"]["resource"] == resource
    for phase in phases.values():
        assert phase["load"]["requests"] > 0
        assert phase["load"]["errors"] == phase["load"]["non_2xx"] == 0
        assert phase["p50_ms"] <= phase["p99_ms"]
    # What the server counted: the primed cache answered the reads; bypasses went to the DB.
    assert phases["cached"]["hit_ratio"] > 0.9
    assert phases["uncached"]["hit_ratio"] == 0.0
    assert phases["uncached"]["database_queries_per_request"] >= 1.0
    assert report["ratios"]["cached_vs_baseline"] > 0
    for plot in ("bench-http-latency.png", "bench-http-throughput.png"):
        assert (tmp_path / "out" / plot).read_bytes()[:4] == b"\x89PNG"
    assert "cached / baseline throughput" in result.stdout


def test_seed_workload_end_to_end(tmp_path: Path) -> None:
    result = bench(
        [
            "seed",
            "--rows",
            "500",
            "--requests",
            "8",
            "--values",
            "5",
            "--writes",
            "2",
            "--write-batch",
            "3",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "out" / "bench-seed.json").read_text())
    assert report["same_rows_in_both_read_phases"] is True
    assert set(report["seconds"]) == {
        "read without cache",
        "read with cache",
        "write without cache",
        "write with cache",
    }
    assert report["rows_read_per_phase"] > 0
    assert report["ratios"]["read_speedup"] > 0
    assert (tmp_path / "out" / "bench-seed.png").read_bytes()[:4] == b"\x89PNG"
    assert "loaded a generated data set of 500 rows" in result.stdout


@pytest.mark.parametrize("kind", ["mysql", "postgres"])
def test_compare_runs_every_app_and_ceiling(kind: str, tmp_path: Path) -> None:
    """`twotier bench compare` on 200 rows: every peer, ceiling and workload measured, and
    the table printed; the write phases' rows removed afterwards."""
    require_wrk()
    require("redis")
    url = database_url(kind, tmp_path)
    try:
        result, report = compared(url, ["--mix-duration", "1"], tmp_path)
        measured = {(f["app"], f["workload"]) for f in report["figures"]}
        assert measured == {
            ("floor", "constant"),
            *(("driver", op) for op in ("read", "insert", "update")),
            *(("twotier", w) for w in ("cold", "hot", "post", "put", "mix")),
            *(
                (peer, w)
                for peer in ("fastapi_redis", "fastapi_cache2", "cashews")
                for w in ("cold", "hot")
            ),
        }
        for figure in report["figures"]:
            assert figure["rps"] > 0, figure
            assert figure["errors"] == 0, figure
        mix = next(f for f in report["figures"] if f["workload"] == "mix")
        assert 0 <= mix["hit_ratio"] <= 1
        assert set(report["ratios"]) == {"cold", "hot", "post", "put"}
        assert report["config"]["hot_rounds"] == 2
        assert "/ best peer" in result.stdout
        # The write phases' rows are gone again: the data set is what it was.
        assert _count(url) == 200
    finally:
        drop_table(url)


def test_compare_takes_another_trees_writes_and_mixes_in_turns(
    tmp_path: Path,
) -> None:
    """`--before TREE`: that tree's twotier by the same phases in the same run, its writes
    and mixes and this tree's taking turns (one after the other favours whichever writes
    second)."""
    require_wrk()
    require("redis")
    url = database_url("mysql", tmp_path)
    tree = Path(__file__).resolve().parents[1]  # this tree again stands for another
    try:
        _, report = compared(
            url, ["--app", "twotier", "--before", str(tree), "--mix-duration", "1"], tmp_path
        )
        measured = [(f["app"], f["workload"]) for f in report["figures"]]
        for app in ("twotier", "twotier-before"):
            for workload in ("cold", "hot", "post", "put", "mix"):
                assert measured.count((app, workload)) == 1, (app, workload)
        mixes = [f for f in report["figures"] if f["workload"] == "mix"]
        assert all(0 <= f["hit_ratio"] <= 1 for f in mixes)
        assert set(report["ratios_before"]) == {"cold", "hot", "post", "put"}
        assert all(f["rps"] > 0 and f["errors"] == 0 for f in report["figures"])
        assert _count(url) == 200
    finally:
        drop_table(url)


def test_a_phase_taken_in_turns_is_reported_by_its_median_round() -> None:
    """Whole rounds (their latencies with their throughput), the lower middle one if even."""
    from twotier.bench.compare import _median
    from twotier.bench.loadgen import LoadResult

    def load(requests: int) -> LoadResult:
        return LoadResult(requests, 1.0, 0, 0, 1.0, 2.0, [(50.0, requests / 1000), (99.0, 9.0)])

    assert _median([load(300), load(100), load(200)]).requests == 200
    assert _median([load(400), load(100)]).requests == 100
    assert _median([load(7)]).percentile(50) == 0.007


def compared(
    url: str, args: list[str], tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``twotier bench compare`` on 200 rows, 1 s phases, 4 connections, 2 rounds, and
    ``args``: its output and its report."""
    small = ["--rows", "200", "--duration", "1", "--connections", "4", "--rounds", "2"]
    result = bench_on(url, ["compare", *small, *args], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "out" / "bench-compare.json").read_text())
    return result, report


def require_wrk() -> None:
    """Skip without wrk, or fail where every service must be there (CI)."""
    if shutil.which("wrk") is None:
        if REQUIRE_SERVICES:
            pytest.fail("wrk is not installed (.ci/run installs it)")
        pytest.skip("wrk is not installed")


def bench_on(
    url: str, args: list[str], tmp_path: Path, cache_url: str = SERVER_URLS["redis"]
) -> subprocess.CompletedProcess[str]:
    """``twotier bench`` over the database at ``url`` and the shared Redis (or the cache at
    ``cache_url``), with the peers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTIER_")}
    env |= {"TWOTIER_DATABASE_URL": url, "TWOTIER_CACHE_URL": cache_url}
    return subprocess.run(
        [TWOTIER, "bench", *args, "--peers", str(PEERS), "--out", str(tmp_path / "out")],
        env=env | {"COLUMNS": "200"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_compare_refuses_a_cluster_in_one_line(tmp_path: Path) -> None:
    """The peers and the seed's handler know one Redis only: a cluster URL is refused with
    a line that says so, before anything starts."""
    url = database_url("mysql", tmp_path)
    result = bench_on(url, ["compare"], tmp_path, cache_url="redis+cluster://127.0.0.1:7000")
    assert result.returncode == 2
    assert "on one Redis" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def _count(url: str) -> int:
    import asyncio

    from twotier.store.sql import SQLStore

    async def count() -> int:
        store = SQLStore(url)
        try:
            return await store.rows("heroes").count()
        finally:
            await store.close()

    return asyncio.run(count())


def test_seed_workload_times_the_seeds_own_writes_on_mysql(tmp_path: Path) -> None:
    """On the seed's tiers (MySQL and Redis), the cached write phase's events also go
    through the seed's own handler (benchmarks/peers/seed_lambda.py), and the ratio is
    reported."""
    require("redis")
    url = database_url("mysql", tmp_path)
    try:
        result = bench_on(
            url,
            [
                *("seed", "--rows", "300", "--requests", "4", "--values", "3"),
                *("--writes", "3", "--write-batch", "4"),
            ],
            tmp_path,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads((tmp_path / "out" / "bench-seed.json").read_text())
        assert report["seconds"]["write with cache, the seed's own"] > 0
        assert report["ratios"]["write_speedup_vs_seed"] > 0
        # The seed's handler wrote its 12 heroes (and the two twotier phases theirs).
        assert _count(url) == 300 + 3 * 12
    finally:
        drop_table(url)


def test_load_runs_twotier_beside_boto3s_batch_writer_on_dynamodb(tmp_path: Path) -> None:
    url = database_url("dynamodb", tmp_path)
    result = bench_on(url, ["load", "--rows", "300"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "out" / "bench-load.json").read_text())
    figures = {figure["loader"]: figure for figure in report["figures"]}
    assert set(figures) == {"twotier load", "boto3 batch_writer"}
    for figure in figures.values():
        assert figure["rows"] == 300
        assert figure["rows_per_second"] > 0
    assert "rows/s" in result.stdout


def test_seed_runs_on_dynamodb(tmp_path: Path) -> None:
    url = database_url("dynamodb", tmp_path)
    seed = bench_on(
        url,
        ["seed", "--rows", "300", "--requests", "4", "--values", "3", "--writes", "2"],
        tmp_path,
    )
    assert seed.returncode == 0, seed.stdout + seed.stderr
    report = json.loads((tmp_path / "out" / "bench-seed.json").read_text())
    assert report["same_rows_in_both_read_phases"] is True
