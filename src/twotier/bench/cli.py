"""``twotier bench http``, ``seed``, ``compare`` and ``load``."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from twotier.config import get_settings

if TYPE_CHECKING:  # the bench's own dependencies load only when a bench runs
    from twotier.bench.target import Target

app = typer.Typer(
    help="Measure the cache: throughput and latency (http), the seed grader's phases (seed).",
    no_args_is_help=True,
)
console = Console()

Url = Annotated[
    str | None,
    typer.Option(
        help="Measure the server at this URL (default: start one, cold, over the "
        "tiers configured by TWOTIER_* and stop it after)."
    ),
]
Rows = Annotated[
    int,
    typer.Option(
        min=1,
        help="Rows the table must hold; a generated data set is loaded if "
        "it holds another number (ignored with --url).",
    ),
]
Out = Annotated[Path, typer.Option(help="Folder for the JSON results and PNG plots.")]
Server = Annotated[str, typer.Option(help="Server to start: granian or uvicorn.")]
Workers = Annotated[
    int, typer.Option(min=1, help="Worker processes of the server it starts (needs Redis).")
]


def _needs_the_bench() -> None:
    """The bench's own dependencies (the `bench` extra) are not the server's: one line
    saying how to get them, and exit 2, where they are missing."""
    missing = [name for name in _BENCH_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        Console(stderr=True, soft_wrap=True).print(
            Text(
                f"twotier bench needs the bench extra ({', '.join(missing)} missing): "
                ".venv/bin/pip install -e '.[bench]' (make test installs every extra)",
                style="red",
            )
        )
        raise typer.Exit(2)


_BENCH_MODULES = ("httpx", "aiohttp", "matplotlib")


class _Bar:
    """One progress task per phase, created as phases start."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, phase: str, fraction: float) -> None:
        if phase not in self._tasks:
            self._tasks[phase] = self._progress.add_task(phase, total=1.0)
        self._progress.update(self._tasks[phase], completed=fraction)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:>20}"), BarColumn(), TimeElapsedColumn(), console=console
    )


class _Report(Protocol):
    config: dict[str, Any]


R = TypeVar("R", bound=_Report)


def _measure(
    url: str | None,
    rows: int,
    server: str,
    workers: int,
    workload: Callable[[Target, _Bar], Coroutine[Any, Any, R]],
    resource: str | None = None,
) -> R:
    """Load the data set if needed, start (or reach) the server, run the workload."""
    from twotier.bench.runs import ensure_rows
    from twotier.bench.target import Target

    if url is None and asyncio.run(ensure_rows(get_settings(), rows, resource=resource)):
        console.print(f"loaded a generated data set of {rows:,} rows")
    with Target(url, server=server, workers=workers) as target, _progress() as progress:
        report = asyncio.run(workload(target, _Bar(progress)))
    report.config |= {
        "rows": rows,
        "server": server if url is None else url,
        "workers": workers if url is None else None,
    }
    return report


@app.command()
def http(
    url: Url = None,
    rows: Rows = 100_000,
    duration: Annotated[float, typer.Option(min=1, help="Seconds per phase.")] = 10.0,
    connections: Annotated[int, typer.Option(min=1, help="Concurrent connections.")] = 64,
    skew: Annotated[float, typer.Option(min=0, help="Zipf exponent of the ids.")] = 1.1,
    write_ratio: Annotated[
        float, typer.Option(min=0, max=1, help="Share of PATCH requests.")
    ] = 0.0,
    wrk: Annotated[bool, typer.Option(help="Use wrk if installed (else aiohttp).")] = True,
    server: Server = "granian",
    workers: Workers = 1,
    out: Out = Path("bench-results"),
    resource: Annotated[
        str | None,
        typer.Option(help="The declared resource to read (default: heroes, or the first one)."),
    ] = None,
) -> None:
    """Concurrent GET /{resource}/{key} (Zipf keys), cached and uncached, against /healthz."""
    _needs_the_bench()
    from twotier.bench.report import http_report
    from twotier.bench.runs import http_workload
    from twotier.resources import default_resource, load_resources

    declared = {r.name: r for r in load_resources(get_settings().resources)}
    name = resource or default_resource(list(declared.values()))
    if name not in declared:
        console.print(f"[red]no resource {name!r} (resources: {', '.join(declared)})[/red]")
        raise typer.Exit(2)
    report = _measure(
        url,
        rows,
        server,
        workers,
        lambda target, progress: http_workload(
            target,
            declared[name],
            ids=rows,
            duration=duration,
            connections=connections,
            skew=skew,
            write_ratio=write_ratio,
            use_wrk=wrk,
            progress=progress,
        ),
        name,
    )
    for path in http_report(report, console, out):
        console.print(f"wrote {path}")


@app.command()
def seed(
    url: Url = None,
    rows: Rows = 1_000_000,
    requests: Annotated[int, typer.Option(min=1, help="Read requests per read phase.")] = 1000,
    values: Annotated[int, typer.Option(min=1, help="xp values per read request.")] = 10,
    hot_values: Annotated[
        int, typer.Option(min=1, help="Distinct xp values the reads draw from.")
    ] = 100,
    writes: Annotated[int, typer.Option(min=1, help="Write requests per write phase.")] = 20,
    write_batch: Annotated[int, typer.Option(min=1, help="Heroes per write request.")] = 50,
    skew: Annotated[float, typer.Option(min=0, help="Zipf exponent of the xp values.")] = 1.1,
    server: Server = "granian",
    workers: Workers = 1,
    out: Out = Path("bench-results"),
    peers: Annotated[
        Path, typer.Option(help="The folder of the seed's own handler (seed_lambda.py).")
    ] = Path("benchmarks/peers"),
) -> None:
    """The grader's phases through POST /batch: reads by xp without and with cache (same
    requests, cold cache), then writes without and with cache, and (MySQL and Redis) the
    cached writes through the seed's own handler."""
    _needs_the_bench()
    from twotier.bench.report import seed_report
    from twotier.bench.runs import seed_workload

    seed_own = _seed_handler(peers)

    report = _measure(
        url,
        rows,
        server,
        workers,
        lambda target, progress: seed_workload(
            target,
            requests=requests,
            values=values,
            hot_values=hot_values,
            writes=writes,
            write_batch=write_batch,
            skew=skew,
            progress=progress,
            seed_own=seed_own,
        ),
    )
    for path in seed_report(report, console, out):
        console.print(f"wrote {path}")
    if not report.same_rows:
        console.print("[red]the cached and uncached read phases returned different rows[/red]")
        raise typer.Exit(1)


def _one_redis(cache_url: str) -> bool:
    """A URL the seed's handler and the peers can use: redis-py's own, one Redis."""
    return urlsplit(cache_url).scheme in ("redis", "rediss")


def _seed_handler(peers: Path) -> Callable[[dict[str, Any]], Any] | None:
    """The seed's own handler over the configured tiers: MySQL and Redis, as the seed had."""
    import importlib
    import os
    import sys

    from twotier.bench.compare import peer_env

    settings = get_settings()
    if not (
        settings.database_url.startswith(("mysql", "mariadb"))
        and _one_redis(settings.cache_url)
        and (peers / "seed_lambda.py").is_file()
    ):
        console.print("the seed's own handler runs on MySQL and one Redis only: not measured")
        return None
    os.environ.update(peer_env(settings, "seed-own"))
    sys.path.insert(0, str(peers.resolve()))
    handler: Callable[[dict[str, Any], Any], Any] = importlib.import_module(
        "seed_lambda"
    ).lambda_handler
    return lambda event: handler(event, None)


@app.command()
def compare(
    rows: Rows = 1_000_000,
    duration: Annotated[float, typer.Option(min=1, help="Seconds per phase.")] = 10.0,
    mix_duration: Annotated[
        float, typer.Option(min=0, help="Seconds of the Zipf read/write mix (0: none).")
    ] = 60.0,
    connections: Annotated[int, typer.Option(min=1, help="Concurrent connections.")] = 64,
    peers: Annotated[Path, typer.Option(help="The folder of the peer apps and ceilings.")] = Path(
        "benchmarks/peers"
    ),
    app_names: Annotated[
        list[str] | None,
        typer.Option("--app", help="Apps to measure (repeat; default: twotier and every peer)."),
    ] = None,
    rounds: Annotated[
        int,
        typer.Option(
            min=1,
            help="Turns of twotier's hot phase and the floor, side by side (median of each).",
        ),
    ] = 3,
    before: Annotated[
        Path | None,
        typer.Option(
            help="Another source tree of twotier (a checkout of the commit a change started "
            "from): its twotier measured too, by the same phases, in the same run; the two "
            "trees' writes and mixes take turns.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    out: Out = Path("bench-results"),
) -> None:
    """twotier beside the apps a user would pick instead and the ceilings (a constant-answer
    ASGI app, the database driver alone), on the same heroes table: cold and hot reads,
    writes, and a Zipf read/write mix."""
    _needs_the_bench()
    from twotier.bench.compare import PEERS
    from twotier.bench.compare import compare as run_compare
    from twotier.bench.report import compare_report
    from twotier.bench.runs import ensure_rows
    from twotier.bench.target import Target  # noqa: F401  (the bench's dependencies)
    from twotier.resources import load_resources

    settings = get_settings()
    if not settings.database_url.startswith(("mysql", "mariadb", "postgres")):
        console.print("[red]compare needs TWOTIER_DATABASE_URL=mysql://… or postgresql://…[/red]")
        raise typer.Exit(2)
    if not _one_redis(settings.cache_url):
        console.print(
            "[red]compare needs TWOTIER_CACHE_URL=redis://… on one Redis (the peers use it; "
            "they know no cluster)[/red]"
        )
        raise typer.Exit(2)
    apps = app_names or ["twotier", *PEERS]
    unknown = set(apps) - {"twotier", *PEERS}
    if unknown:
        console.print(f"[red]unknown apps: {', '.join(sorted(unknown))}[/red]")
        raise typer.Exit(2)
    [heroes] = [r for r in load_resources(None) if r.name == "heroes"]
    if asyncio.run(ensure_rows(settings, rows, resource="heroes")):
        console.print(f"loaded a generated data set of {rows:,} rows")
    with _progress() as progress:
        report = run_compare(
            settings,
            heroes,
            peers=peers.resolve(),
            rows=rows,
            duration=duration,
            connections=connections,
            mix_duration=mix_duration,
            apps=apps,
            progress=_Bar(progress),
            rounds=rounds,
            before=before,
        )
    for path in compare_report(report, console, out):
        console.print(f"wrote {path}")


@app.command()
def load(
    rows: Annotated[int, typer.Option(min=1, help="Rows of the generated file.")] = 100_000,
    peers: Annotated[
        Path, typer.Option(help="The folder of the peer loader (boto3_batch_writer.py).")
    ] = Path("benchmarks/peers"),
    out: Out = Path("bench-results"),
) -> None:
    """DynamoDB: `twotier load` beside boto3's own batch_writer on the same generated file,
    each into the emptied heroes table (the table holds the file's rows afterwards)."""
    _needs_the_bench()
    import json

    from twotier.bench.load import compare_loads

    settings = get_settings()
    if not settings.on_dynamodb:
        console.print("[red]bench load needs TWOTIER_DATABASE_URL=dynamodb://…[/red]")
        raise typer.Exit(2)
    report = compare_loads(settings, rows, peers.resolve())
    best = max(f.rows_per_second for f in report.figures)
    for figure in report.figures:
        console.print(
            f"{figure.loader:>20}: {figure.rows:,} rows in {figure.seconds:.1f} s, "
            f"{figure.rows_per_second:,.0f} rows/s ({figure.rows_per_second / best:.2f}x the best)"
        )
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench-load.json"
    path.write_text(json.dumps(report.to_json(), indent=2))
    console.print(f"wrote {path}")
