"""The two workloads: ``http`` (throughput and latency) and ``seed`` (the grader's phases)."""

from __future__ import annotations

import asyncio
import http.client
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from twotier.bench.loadgen import LoadResult, run_aiohttp, run_wrk, wrk_available
from twotier.bench.target import Target, delta
from twotier.bench.workload import KeyMix, Zipf, fixed, fixed_lua, patches
from twotier.bootstrap import build_service
from twotier.config import Settings
from twotier.dataset import SPAN_DEFAULT, generate, numbering, write_csv
from twotier.loader import load_csv
from twotier.resources import Resource, load_resources

#: Called with (phase name, fraction done) while a phase runs.
Progress = Callable[[str, float], None]


async def ensure_rows(
    settings: Settings,
    rows: int,
    seed: int = 0,
    resource: str | None = None,
    *,
    reload: bool = False,
) -> bool:
    """Make a resource's table hold its generated data set of ``rows`` rows (``reload``:
    again, after a bench changed rows); True if it was loaded."""
    service = build_service(settings)
    try:
        await service.prepare()
        policy = service.resource(resource or service.default_resource)
        if not reload and await policy.rows.count() == rows:
            return False
    finally:
        await service.close()
    with tempfile.TemporaryDirectory(prefix="twotier-bench-") as work:
        path = Path(work) / f"{policy.resource.name}.csv"
        with path.open("w", encoding="utf-8", newline="") as out:
            write_csv(out, policy.resource, rows, seed)
        await load_csv(settings, path, policy.resource.name, replace=True)
    return True


# -- http ---------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    load: LoadResult
    hit_ratio: float | None = None
    database_queries_per_request: float | None = None


@dataclass
class HttpReport:
    config: dict[str, Any]
    phases: list[Phase] = field(default_factory=list)

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)

    @property
    def cached_vs_baseline(self) -> float:
        return self.phase("cached").load.rps / self.phase("baseline").load.rps

    @property
    def cached_vs_uncached(self) -> float:
        return self.phase("cached").load.rps / self.phase("uncached").load.rps

    def as_dict(self) -> dict[str, Any]:
        return {
            "workload": "http",
            "config": self.config,
            "phases": [
                asdict(p)
                | {
                    "rps": p.load.rps,
                    "p50_ms": p.load.percentile(50),
                    "p95_ms": p.load.percentile(95),
                    "p99_ms": p.load.percentile(99),
                }
                for p in self.phases
            ],
            "ratios": {
                "cached_vs_baseline": self.cached_vs_baseline,
                "cached_vs_uncached": self.cached_vs_uncached,
            },
        }


async def http_workload(
    target: Target,
    resource: Resource,
    *,
    ids: int,
    duration: float,
    connections: int,
    skew: float,
    write_ratio: float,
    use_wrk: bool,
    progress: Progress,
) -> HttpReport:
    """/healthz (baseline), then Zipf GET /{resource}/{key} cached (after a priming pass
    that reads every key once), then the same reads with Cache-Control: no-cache
    (uncached), all against one server."""
    use_wrk = use_wrk and wrk_available()
    report = HttpReport(
        {
            "resource": resource.name,
            "ids": ids,
            "duration_s": duration,
            "connections": connections,
            "skew": skew,
            "write_ratio": write_ratio,
            "generator": "wrk" if use_wrk else "aiohttp",
        }
    )
    cached = KeyMix(
        ids,
        f"/{resource.name}/",
        numbering(resource),
        patches(resource),
        skew,
        write_ratio,
        api_key=target.api_key,
    )
    plan: list[tuple[str, str, KeyMix | None, float]] = [
        ("baseline", "/healthz", None, duration),
        ("cached", "", cached, duration),
        ("uncached", "", replace(cached, bypass=True), duration),
    ]
    for name, path, mix, seconds in plan:
        if name == "cached":
            await prime(target, resource, ids, progress)
        before = target.counters()
        ticker = asyncio.create_task(_tick(progress, name, seconds))
        try:
            if use_wrk:
                script = mix.lua() if mix else fixed_lua(path)
                load = await run_wrk(target.url, script, duration=seconds, connections=connections)
            else:
                stream = mix.requests() if mix else (lambda p=path: fixed(p))
                load = await run_aiohttp(
                    target.url, stream, duration=seconds, connections=connections
                )
        finally:
            ticker.cancel()
        progress(name, 1.0)
        after = target.counters()
        reads = sum(
            delta(before, after, f"twotier_cache_{kind}_total")
            for kind in ("hits", "misses", "bypasses")
        )
        hits = delta(before, after, "twotier_cache_hits_total")
        queries = delta(before, after, "twotier_database_query_duration_seconds_count")
        report.phases.append(
            Phase(
                name,
                load,
                hit_ratio=hits / reads if reads else None,
                database_queries_per_request=queries / load.requests if load.requests else None,
            )
        )
    return report


async def prime(
    target: Target, resource: Resource, ids: int, progress: Progress, chunk: int = 1000
) -> None:
    """Read every key once, a thousand per request (the seed protocol's reads by key), so
    that the cached phase starts with every row in the cache."""
    keys_of = numbering(resource)
    async with httpx.AsyncClient(
        base_url=target.url, headers=target.headers, timeout=120
    ) as client:
        for start in range(1, ids + 1, chunk):
            keys = [keys_of.key(n) for n in range(start, min(start + chunk, ids + 1))]
            event = {
                "USE_CACHE": "True",
                "REQUEST": "read",
                "KEY": resource.key,
                "SQLS": keys,
                "RESOURCE": resource.name,
            }
            (await client.post("/batch", json=event)).raise_for_status()
            progress("priming", min(1.0, start / ids))
    progress("priming", 1.0)


async def _tick(progress: Progress, name: str, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        progress(name, min(0.99, (loop.time() - started) / seconds))
        await asyncio.sleep(0.2)


# -- seed ---------------------------------------------------------------------------------

#: The phase of the seed's own handler (``benchmarks/peers/seed_lambda.py``) doing the
#: cached write phase's events.
SEED_OWN_WRITES = "write with cache, the seed's own"


@dataclass
class SeedReport:
    config: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    rows_read: int = 0
    same_rows: bool = False

    @property
    def read_speedup(self) -> float:
        return self.seconds["read without cache"] / self.seconds["read with cache"]

    @property
    def write_speedup_vs_seed(self) -> float | None:
        """The seed's own handler's time for the cached write phase over twotier's."""
        own = self.seconds.get(SEED_OWN_WRITES)
        return own / self.seconds["write with cache"] if own else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "workload": "seed",
            "config": self.config,
            "seconds": self.seconds,
            "rows_read_per_phase": self.rows_read,
            "same_rows_in_both_read_phases": self.same_rows,
            "ratios": {
                "read_speedup": self.read_speedup,
                "write_speedup_vs_seed": self.write_speedup_vs_seed,
            },
        }


def seed_events(
    *, requests: int, values: int, hot_values: int, xp_max: int, skew: float, seed: int
) -> list[list[int]]:
    """The grader's reads: each request asks for ``values`` xp values, drawn (Zipf) from a
    set of ``hot_values`` values picked at random, so that hot values repeat."""
    rng = random.Random(seed)
    hot = rng.sample(range(xp_max), min(hot_values, xp_max))
    zipf = Zipf(len(hot), skew, rng)
    return [[hot[zipf() - 1] for _ in range(values)] for _ in range(requests)]


async def seed_workload(
    target: Target,
    *,
    requests: int,
    values: int,
    writes: int,
    write_batch: int,
    hot_values: int = 100,
    xp_max: int = SPAN_DEFAULT,
    skew: float = 1.1,
    seed: int = 0,
    progress: Progress,
    seed_own: Callable[[dict[str, Any]], Any] | None = None,
) -> SeedReport:
    """Reads by xp without cache, the same reads with cache (cold at the start), then writes
    without and with cache; one client, one request at a time, as the grader did."""
    events = seed_events(
        requests=requests,
        values=values,
        hot_values=hot_values,
        xp_max=xp_max,
        skew=skew,
        seed=seed,
    )
    report = SeedReport(
        {
            "requests": requests,
            "values_per_request": values,
            "hot_values": hot_values,
            "writes": writes,
            "write_batch": write_batch,
            "xp_max": xp_max,
            "skew": skew,
            "seed": seed,
            "client": "http.client, one keep-alive connection",
        }
    )
    per_phase = writes * write_batch
    [declared] = [r for r in load_resources(None) if r.name == "heroes"]
    heroes = list(generate(declared, 2 * per_phase, seed + 1, xp_max))
    # Bodies are encoded before the clock starts, and answers compared after it stops:
    # the client does as little as it can while timed, the same in every phase.
    reads = {
        use_cache: [
            orjson.dumps({"USE_CACHE": use_cache, "REQUEST": "read", "SQLS": e}) for e in events
        ]
        for use_cache in ("False", "True")
    }
    writes_by_phase = {
        use_cache: [
            orjson.dumps(
                {
                    "USE_CACHE": use_cache,
                    "REQUEST": "write",
                    "SQLS": heroes[start : start + write_batch],
                }
            )
            for start in range(number * per_phase, (number + 1) * per_phase, write_batch)
        ]
        for number, use_cache in enumerate(("False", "True"))
    }
    answers: dict[str, list[bytes]] = {}
    phases = [
        ("read without cache", reads["False"]),
        ("read with cache", reads["True"]),
        ("write without cache", writes_by_phase["False"]),
        ("write with cache", writes_by_phase["True"]),
    ]
    for name, bodies in phases:
        seconds, answers[name] = await asyncio.to_thread(
            _post_all, target.url, bodies, partial(progress, name), target.headers
        )
        report.seconds[name] = seconds
    if seed_own is not None:  # the same events, through the seed's own handler
        own_events: list[dict[str, Any]] = [orjson.loads(body) for body in writes_by_phase["True"]]
        report.seconds[SEED_OWN_WRITES] = await asyncio.to_thread(_invoke_all, seed_own, own_events)
    report.same_rows = answers["read without cache"] == answers["read with cache"]
    report.rows_read = sum(answer.count(b'"id":') for answer in answers["read with cache"])
    return report


def _invoke_all(handler: Callable[[dict[str, Any]], Any], events: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for event in events:
        answer = handler(event)
        if answer.get("statusCode") != 200:
            raise RuntimeError(f"the seed's handler answered {answer}")
    return time.perf_counter() - started


def _post_all(
    url: str, bodies: list[bytes], progress: Callable[[float], None], headers: dict[str, str]
) -> tuple[float, list[bytes]]:
    """POST each body to /batch, one at a time on one keep-alive connection, as the grader's
    client did; return the seconds it took and the answers.

    The stdlib client costs the least per request of the Python clients measured here, so
    the phases time the server, not the client.
    """
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
    headers = headers | {"Content-Type": "application/json"}
    answers: list[bytes] = []
    try:
        started = time.perf_counter()
        for index, body in enumerate(bodies):
            connection.request("POST", "/batch", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"POST /batch answered {response.status}: {answer[:200]!r}")
            answers.append(answer)
            if index % 50 == 0:
                progress(index / len(bodies))
        seconds = time.perf_counter() - started
    finally:
        connection.close()
    progress(1.0)
    return seconds, answers
