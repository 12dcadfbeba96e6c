"""``twotier bench compare``: twotier beside its peers and its ceilings, on the same data.

One run, one machine, the same table. Each app is served by granian (as ``twotier serve``
serves twotier) and driven by wrk:

- **ceilings**: the floor (``peers/floor.py``: a raw ASGI app answering a constant body) and
  the database driver alone (``peers/driver_loops.py``: aiomysql or asyncpg, 64 coroutines
  over a 10-connection pool, no HTTP);
- **peers**, what a user would write or pick instead: ``fastapi_redis`` (FastAPI + redis-py
  + SQLAlchemy, cache-aside by hand), ``fastapi_cache2`` (its ``@cache``), ``cashews`` (its
  ``@cache`` with the client-side cache);
- **workloads**: *cold* (ids uniform over every row, each app starting with an empty
  cache: nearly every read a miss), *hot* (1,000 ids, each read once first: every read a
  hit), for twotier and each peer; *writes* (``POST /heroes``, ``PUT /heroes/{id}``) for
  twotier against the driver's loop of the same single-row transactions; *mix* (Zipf 1.0
  over every row, 5% writes, from a cold start) for twotier, with its hit ratio. The data set
  is loaded again at the end (the writes changed it). twotier's hot phase and the floor take
  turns (``rounds``, median of each: ``read_phases``); with ``--before``, the two trees'
  writes and mixes take turns too (``in_turns``).

The table printed (and written as JSON) holds each figure and its ratio to the ceiling and
to the best peer. Nothing here judges speed: the ratios are for people to read.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import MetaData, func, select
from sqlalchemy.ext.asyncio import create_async_engine

from twotier.bench.loadgen import LoadResult, run_wrk
from twotier.bench.runs import ensure_rows
from twotier.bench.target import Target, delta, forget_keys, free_port
from twotier.bench.workload import KeyMix, fixed_lua, patches, writes_lua
from twotier.config import Settings
from twotier.resources import Resource
from twotier.store.sql import async_url
from twotier.store.sql_schema import resource_table

PEERS = ("fastapi_redis", "fastapi_cache2", "cashews")
_PEER_MODULES = {
    "fastapi_redis": "fastapi_redis:app",
    "fastapi_cache2": "fastapi_cache2_app:app",
    "cashews": "cashews_app:app",
    "floor": "floor:app",
}
_DRIVERS = {"mysql": "aiomysql", "postgresql": "asyncpg"}
HOT_IDS = 1000
#: The bench's own heroes: written by the write phases, deleted at the end.
WRITTEN_NAME = "bench-write"

Progress = Callable[[str, float], None]


@dataclass
class Figure:
    """One app under one workload."""

    app: str
    workload: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    hit_ratio: float | None = None


@dataclass
class CompareReport:
    config: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)

    def get(self, app: str, workload: str) -> Figure | None:
        return next((f for f in self.figures if f.app == app and f.workload == workload), None)

    def best_peer(self, workload: str) -> Figure | None:
        peers = [f for f in self.figures if f.workload == workload and f.app in PEERS]
        return max(peers, key=lambda f: f.rps, default=None)

    def ceiling(self, workload: str, app: str = "twotier") -> Figure | None:
        """The floor app for HTTP reads that hit (the one measured in turns with ``app``'s
        hot phase), the driver loop for the rest."""
        if workload == "hot":
            return self.get(floor_of(app), "constant")
        return self.get("driver", {"cold": "read", "post": "insert", "put": "update"}[workload])

    def ratios(self, app: str = "twotier") -> dict[str, dict[str, float | None]]:
        ratios: dict[str, dict[str, float | None]] = {}
        for workload in ("cold", "hot", "post", "put"):
            mine = self.get(app, workload)
            if mine is None:
                continue
            ceiling, peer = self.ceiling(workload, app), self.best_peer(workload)
            ratios[workload] = {
                "vs_ceiling": mine.rps / ceiling.rps if ceiling and ceiling.rps else None,
                "vs_best_peer": mine.rps / peer.rps if peer and peer.rps else None,
            }
        return ratios

    def as_dict(self) -> dict[str, Any]:
        report = {
            "workload": "compare",
            "config": self.config,
            "figures": [asdict(f) for f in self.figures],
            "ratios": self.ratios(),
        }
        if self.get(BEFORE, "hot") is not None:
            report["ratios_before"] = self.ratios(BEFORE)
        return report


#: twotier served from another source tree (``--before``): the tree a change started from.
BEFORE = "twotier-before"


def floor_of(app: str) -> str:
    """The name of the floor measured in turns with ``app``'s hot phase."""
    return "floor" if app == "twotier" else f"floor-{app}"


def _figure(app: str, workload: str, load: LoadResult, hit_ratio: float | None = None) -> Figure:
    return Figure(
        app,
        workload,
        load.rps,
        load.percentile(50),
        load.percentile(99),
        load.errors + load.non_2xx,
        hit_ratio,
    )


# -- the apps -----------------------------------------------------------------------------


@contextmanager
def peer_server(peers: Path, name: str, env: dict[str, str]) -> Iterator[str]:
    """Serve a peer app with granian on a free port; yield its URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("granian")),
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-ws",
            "--log-level",
            "warning",
            _PEER_MODULES[name],
        ],
        cwd=peers,
        env=os.environ | env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode()[-2000:] if process.stderr else ""
            raise RuntimeError(f"a peer exited at start-up: {error}")
        try:
            if httpx.get(f"{url}/heroes/1", timeout=2).status_code in (200, 404):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no peer answering at {url}")


def peer_env(settings: Settings, prefix: str) -> dict[str, str]:
    return {
        "PEER_DATABASE_URL": async_url(settings.database_url).render_as_string(hide_password=False),
        "PEER_REDIS_URL": settings.cache_url,
        "PEER_PREFIX": prefix,
    }


def driver_loop(
    peers: Path, settings: Settings, op: str, rows: int, duration: float, connections: int
) -> Figure:
    """The driver alone, in a process of its own (as each server has)."""
    backend = async_url(settings.database_url).get_backend_name()
    dsn = async_url(settings.database_url).set(drivername=backend.split("+")[0])
    done = subprocess.run(
        [
            sys.executable,
            str(peers / "driver_loops.py"),
            "--driver",
            _DRIVERS[backend],
            "--dsn",
            dsn.set(query={}).render_as_string(hide_password=False),
            "--op",
            op,
            "--rows",
            str(rows),
            "--duration",
            str(duration),
            "--concurrency",
            str(connections),
            "--pool",
            str(settings.database_pool_size),
        ],
        capture_output=True,
        text=True,
        timeout=duration + 120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the driver loop failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return Figure("driver", op, result["rps"], result["p50_ms"], result["p99_ms"])


# -- the workloads ------------------------------------------------------------------------


async def _reads(url: str, keys: int, duration: float, connections: int) -> LoadResult:
    """GET /heroes/{id}, ids uniform over 1..keys (skew 0)."""
    return await run_wrk(
        url, KeyMix(keys, skew=0.0).lua(), duration=duration, connections=connections
    )


async def _prime_by_get(url: str, keys: int) -> None:
    """Read each of ids 1..keys once (what every app answers: the peers have no /batch)."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for start in range(1, keys + 1, 50):
            await asyncio.gather(
                *(client.get(f"/heroes/{n}") for n in range(start, min(start + 50, keys + 1)))
            )


async def read_phases(
    app: str,
    url: str,
    rows: int,
    duration: float,
    connections: int,
    progress: Progress,
    *,
    floor: str | None = None,
    rounds: int = 1,
) -> list[Figure]:
    """Cold (uniform over every row, from an empty cache), then hot (1,000 primed ids).

    With ``floor`` (its URL), the hot phase and the floor's take turns ``rounds`` times
    and each is reported by its median round: on a shared machine the server's own speed
    moves by a third within minutes (the floor read 24.8k and 32.4k req/s in two runs of
    an hour, the hot phase of one tree 13.8k and 23k), so a floor measured minutes away
    from the phase it is set against says as much about the minute as about the app."""
    progress(f"{app}: cold", 0.0)
    cold = _figure(app, "cold", await _reads(url, rows, duration, connections))
    progress(f"{app}: cold", 1.0)
    hot_ids = min(HOT_IDS, rows)
    await _prime_by_get(url, hot_ids)
    hots: list[LoadResult] = []
    floors: list[LoadResult] = []
    for _ in range(rounds if floor else 1):
        if floor:
            script = fixed_lua("/heroes/1")
            floors.append(await run_wrk(floor, script, duration=duration, connections=connections))
        hots.append(await _reads(url, hot_ids, duration, connections))
    figures = [cold, _figure(app, "hot", _median(hots))]
    if floors:
        figures.append(_figure(floor_of(app), "constant", _median(floors)))
    progress(f"{app}: hot", 1.0)
    return figures


def _median(loads: Sequence[LoadResult]) -> LoadResult:
    """The round of median throughput (the lower of the middle two), whole: its latencies
    are those of the same round."""
    return sorted(loads, key=lambda load: load.rps)[(len(loads) - 1) // 2]


def _new_hero(resource: Resource) -> bytes:
    rng = random.Random(0)
    return orjson.dumps(
        {
            name: WRITTEN_NAME if name == "name" else resource.field(name).sample(rng)
            for name in resource.columns
            if name != resource.key
        },
        option=orjson.OPT_UTC_Z,
    )


async def write_phases(
    target: Target,
    resource: Resource,
    rows: int,
    duration: float,
    connections: int,
    app: str = "twotier",
) -> list[Figure]:
    """POST new rows, then PUT existing ones, through twotier."""
    posted, put = await _writes(target, resource, rows, duration, connections)
    return [_figure(app, "post", posted), _figure(app, "put", put)]


async def _writes(
    target: Target, resource: Resource, rows: int, duration: float, connections: int
) -> tuple[LoadResult, LoadResult]:
    headers = {"Content-Type": "application/json"} | target.headers
    body = _new_hero(resource)
    path = f"/{resource.name}"
    posted = await run_wrk(
        target.url,
        writes_lua("POST", path, 0, body, headers),
        duration=duration,
        connections=connections,
    )
    put = await run_wrk(
        target.url,
        writes_lua("PUT", path + "/", rows, body, headers),
        duration=duration,
        connections=connections,
    )
    return posted, put


def in_turns(
    trees: Sequence[tuple[str, dict[str, str]]],
    resource: Resource,
    rows: int,
    durations: tuple[float, float],
    connections: int,
    rounds: int,
    progress: Progress,
) -> list[Figure]:
    """Each tree's writes and mix (``durations``: a write phase's, the mix's; 0: no mix),
    the trees taking turns (which goes first alternating), the median round of each: a
    tree's writes, and a mix's PATCHes and misses, warm the database's pages for whichever
    runs next, so one after the other favours the second. The writes of a tree go to one
    server; each mix to a server of its own, from a cold start."""
    duration, mix_duration = durations
    loads: dict[str, dict[str, list[LoadResult]]] = {
        name: {"post": [], "put": []} for name, _ in trees
    }
    mixes: dict[str, list[Figure]] = {name: [] for name, _ in trees}
    with ExitStack() as servers:
        targets = {name: servers.enter_context(Target(env=env)) for name, env in trees}
        for turn in range(rounds):
            order = trees if turn % 2 == 0 else list(reversed(trees))
            for name, _ in order:
                posted, put = asyncio.run(
                    _writes(targets[name], resource, rows, duration, connections)
                )
                loads[name]["post"].append(posted)
                loads[name]["put"].append(put)
            for name, env in order if mix_duration > 0 else ():
                with Target(env=env) as fresh:
                    mixed = mix_phase(fresh, resource, rows, mix_duration, connections, name)
                    mixes[name].append(asyncio.run(mixed))
            progress("writes and mixes in turns", (turn + 1) / rounds)
    figures = [
        _figure(name, workload, _median(rounds_of))
        for name, by_workload in loads.items()
        for workload, rounds_of in by_workload.items()
    ]
    figures += [
        sorted(runs, key=lambda figure: figure.rps)[(len(runs) - 1) // 2]
        for runs in mixes.values()
        if runs
    ]
    return figures


async def mix_phase(
    target: Target,
    resource: Resource,
    rows: int,
    duration: float,
    connections: int,
    app: str = "twotier",
) -> Figure:
    """Zipf 1.0 over every row, 5% PATCHes, from a cold start; with the server's hit ratio."""
    mix = KeyMix(
        rows,
        f"/{resource.name}/",
        patches=patches(resource),
        skew=1.0,
        write_ratio=0.05,
        api_key=target.api_key,
    )
    before = target.counters()
    load = await run_wrk(target.url, mix.lua(), duration=duration, connections=connections)
    after = target.counters()
    reads = sum(
        delta(before, after, f"twotier_cache_{kind}_total")
        for kind in ("hits", "misses", "bypasses")
    )
    hits = delta(before, after, "twotier_cache_hits_total")
    return _figure(app, "mix", load, hits / reads if reads else None)


async def warm_database(settings: Settings, resource: Resource) -> None:
    """Read the whole table once, so that no app's cold phase pays for the first reads of
    the database's pages (the first app would otherwise run on a colder database)."""
    table = resource_table(resource, MetaData())
    engine = create_async_engine(async_url(settings.database_url).sqlalchemy())
    try:
        async with engine.connect() as conn:
            await conn.execute(select(func.count(table.c[resource.columns[-1]])))
    finally:
        await engine.dispose()


def compare(
    settings: Settings,
    resource: Resource,
    *,
    peers: Path,
    rows: int,
    duration: float,
    connections: int,
    mix_duration: float,
    apps: Sequence[str],
    progress: Progress,
    rounds: int = 3,
    before: Path | None = None,
) -> CompareReport:
    """Every app and ceiling, one after another, on the table of ``rows`` heroes; with
    ``before`` (a source tree of twotier), that tree's twotier too, by the same phases."""
    report = CompareReport(
        {
            "rows": rows,
            "duration_s": duration,
            "mix_duration_s": mix_duration,
            "hot_rounds": rounds,
            "connections": connections,
            "database": async_url(settings.database_url).get_backend_name(),
            "cache": settings.cache_url.split(":", 1)[0],
            "apps": list(apps) + ([BEFORE] if before is not None else []),
            "server": "granian, 1 worker",
            "generator": "wrk -t1",
        }
    )
    asyncio.run(warm_database(settings, resource))
    if "twotier" not in apps:  # else measured by turns with twotier's hot phase
        with peer_server(peers, "floor", {}) as url:
            script = fixed_lua("/heroes/1")
            loads = [
                asyncio.run(run_wrk(url, script, duration=duration, connections=connections))
                for _ in range(rounds)
            ]
            report.figures.append(_figure("floor", "constant", _median(loads)))
        progress("floor", 1.0)
    for op in ("read", "insert", "update"):
        report.figures.append(driver_loop(peers, settings, op, rows, duration, connections))
        progress(f"driver: {op}", 1.0)
    try:
        if "twotier" in apps:
            trees: list[tuple[str, dict[str, str]]] = [("twotier", {})]
            if before is not None:
                # The same command, importing twotier from the other tree's sources.
                trees.append((BEFORE, {"PYTHONPATH": str(before.resolve() / "src")}))
            for name, env in trees:
                report.figures += _twotier_phases(
                    name,
                    env,
                    resource,
                    rows,
                    duration,
                    connections,
                    mix_duration,
                    rounds,
                    peers,
                    progress,
                    alone=before is None,
                )
            if before is not None:
                report.figures += in_turns(
                    trees,
                    resource,
                    rows,
                    (duration, mix_duration),
                    connections,
                    rounds,
                    progress,
                )
        for name in PEERS:
            if name in apps:
                env = peer_env(settings, f"peer-{name}-{uuid.uuid4().hex[:8]}")
                try:
                    with peer_server(peers, name, env) as url:
                        report.figures += asyncio.run(
                            read_phases(name, url, rows, duration, connections, progress)
                        )
                finally:
                    forget_keys(settings.cache_url, env["PEER_PREFIX"])
    finally:
        # The write phases added rows and changed others (their lookup values too): the
        # next bench must find the generated data set again.
        asyncio.run(ensure_rows(settings, rows, resource=resource.name, reload=True))
    return report


def _twotier_phases(
    app: str,
    env: dict[str, str],
    resource: Resource,
    rows: int,
    duration: float,
    connections: int,
    mix_duration: float,
    rounds: int,
    peers: Path,
    progress: Progress,
    *,
    alone: bool = True,
) -> list[Figure]:
    """A twotier server's reads (its hot phase in turns with the floor), and with
    ``alone`` its writes and mix (else measured in turns with another tree's:
    ``in_turns``)."""
    figures: list[Figure] = []
    with Target(env=env) as target, peer_server(peers, "floor", {}) as floor:
        figures += asyncio.run(
            read_phases(
                app, target.url, rows, duration, connections, progress, floor=floor, rounds=rounds
            )
        )
        if alone:
            figures += asyncio.run(write_phases(target, resource, rows, duration, connections, app))
            progress(f"{app}: writes", 1.0)
    if alone and mix_duration > 0:
        with Target(env=env) as target:
            figures.append(
                asyncio.run(mix_phase(target, resource, rows, mix_duration, connections, app))
            )
        progress(f"{app}: mix", 1.0)
    return figures
