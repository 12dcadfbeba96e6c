"""Bench output: a rich table on the terminal, a JSON file, PNG plots."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from twotier.bench.compare import BEFORE, CompareReport
from twotier.bench.runs import HttpReport, SeedReport


def _write_json(out: Path, stem: str, data: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.json"
    data = {"date": datetime.now(UTC).isoformat(timespec="seconds")} | data
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def http_report(report: HttpReport, console: Console, out: Path) -> list[Path]:
    table = Table(
        title=f"twotier bench http ({report.config['generator']}, "
        f"{report.config['connections']} connections)"
    )
    for column in (
        "phase",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "hit ratio",
        "db queries/req",
        "errors",
    ):
        table.add_column(column, justify="right" if column != "phase" else "left")
    for phase in report.phases:
        load = phase.load
        table.add_row(
            phase.name,
            f"{load.rps:,.0f}",
            f"{load.percentile(50):.2f}",
            f"{load.percentile(95):.2f}",
            f"{load.percentile(99):.2f}",
            "-" if phase.hit_ratio is None else f"{phase.hit_ratio:.3f}",
            "-"
            if phase.database_queries_per_request is None
            else f"{phase.database_queries_per_request:.3f}",
            str(load.errors + load.non_2xx),
        )
    console.print(table)
    console.print(
        f"cached / baseline throughput: [bold]{report.cached_vs_baseline:.2f}x[/bold]   "
        f"cached / uncached: [bold]{report.cached_vs_uncached:.2f}x[/bold]"
    )
    paths = [_write_json(out, "bench-http", report.as_dict())]
    paths += _http_plots(report, out)
    return paths


def _http_plots(report: HttpReport, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latency = out / "bench-http-latency.png"
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for phase in report.phases:
        percentiles = [p for p, _ in phase.load.cdf_ms]
        axes.plot([ms for _, ms in phase.load.cdf_ms], percentiles, marker=".", label=phase.name)
    axes.set_xscale("log")
    axes.set_xlabel("latency (ms, log scale)")
    axes.set_ylabel("percentile of requests")
    resource = report.config.get("resource", "heroes")
    axes.set_title(f"Latency distribution, GET /{resource}/{{key}} vs /healthz")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(latency, dpi=110)
    plt.close(figure)

    throughput = out / "bench-http-throughput.png"
    figure, axes = plt.subplots(figsize=(6, 4))
    names = [p.name for p in report.phases]
    values = [p.load.rps for p in report.phases]
    bars = axes.bar(names, values, color=["#888888", "#2a9d8f", "#e76f51"][: len(names)])
    axes.bar_label(bars, labels=[f"{v:,.0f}" for v in values])
    axes.set_ylabel("requests / second")
    axes.set_title("Throughput: cached vs uncached vs baseline (/healthz)")
    figure.tight_layout()
    figure.savefig(throughput, dpi=110)
    plt.close(figure)
    return [latency, throughput]


def seed_report(report: SeedReport, console: Console, out: Path) -> list[Path]:
    table = Table(title="twotier bench seed (POST /batch, one client)")
    table.add_column("phase")
    table.add_column("seconds", justify="right")
    for name, seconds in report.seconds.items():
        table.add_row(name, f"{seconds:.2f}")
    console.print(table)
    same = "[green]same rows[/green]" if report.same_rows else "[red]ROWS DIFFER[/red]"
    console.print(
        f"read speedup with cache: [bold]{report.read_speedup:.1f}x[/bold]   "
        f"({report.rows_read:,} rows per read phase; {same})"
    )
    if report.write_speedup_vs_seed is not None:
        console.print(
            "cached writes against the seed's own handler: "
            f"[bold]{report.write_speedup_vs_seed:.1f}x[/bold] faster"
        )
    paths = [_write_json(out, "bench-seed", report.as_dict())]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot = out / "bench-seed.png"
    figure, axes = plt.subplots(figsize=(7, 4))
    names = list(report.seconds)
    values = list(report.seconds.values())
    colors = ["#e76f51", "#2a9d8f", "#e76f51", "#2a9d8f", "#8d99ae"][: len(names)]
    bars = axes.barh(names, values, color=colors)
    axes.bar_label(bars, labels=[f"{v:.2f} s" for v in values])
    axes.invert_yaxis()
    axes.set_xlabel("seconds")
    axes.set_title(f"Seed workload: reads {report.read_speedup:.1f}x faster with the cache")
    figure.tight_layout()
    figure.savefig(plot, dpi=110)
    plt.close(figure)
    paths.append(plot)
    return paths


def compare_report(report: CompareReport, console: Console, out: Path) -> list[Path]:
    config = report.config
    table = Table(
        title=f"twotier bench compare ({config['database']} + {config['cache']}, "
        f"{config['rows']:,} rows, {config['connections']} connections)"
    )
    for column in (
        "workload",
        "twotier req/s",
        "p99 ms",
        "best peer",
        "ceiling",
        "/ ceiling",
        "/ best peer",
    ):
        table.add_column(column, justify="left" if column in ("workload", "best peer") else "right")
    for app in ("twotier", BEFORE):
        ratios = report.ratios(app)
        for workload in ("cold", "hot", "post", "put"):
            mine = report.get(app, workload)
            if mine is None:
                continue
            peer, ceiling = report.best_peer(workload), report.ceiling(workload, app)
            table.add_row(
                workload if app == "twotier" else f"{workload} (before)",
                f"{mine.rps:,.0f}",
                f"{mine.p99_ms:.1f}",
                f"{peer.app} {peer.rps:,.0f}" if peer else "-",
                f"{ceiling.app} {ceiling.rps:,.0f}" if ceiling else "-",
                _times(ratios[workload]["vs_ceiling"]),
                _times(ratios[workload]["vs_best_peer"]),
            )
    console.print(table)
    for app in ("twotier", BEFORE):
        mix = report.get(app, "mix")
        if mix is not None:
            hit = "-" if mix.hit_ratio is None else f"{mix.hit_ratio:.3f}"
            console.print(
                f"{app} mix (Zipf 1.0, 5% writes, {config['mix_duration_s']:.0f} s from cold): "
                f"{mix.rps:,.0f} req/s, p99 [bold]{mix.p99_ms:.1f} ms[/bold], hit ratio {hit}"
            )
    every = Table(title="every app and workload")
    for column in ("app", "workload", "req/s", "p50 ms", "p99 ms", "errors"):
        every.add_column(column, justify="left" if column in ("app", "workload") else "right")
    for figure in report.figures:
        every.add_row(
            figure.app,
            figure.workload,
            f"{figure.rps:,.0f}",
            f"{figure.p50_ms:.2f}",
            f"{figure.p99_ms:.2f}",
            str(figure.errors),
        )
    console.print(every)
    return [_write_json(out, "bench-compare", report.as_dict())]


def _times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"
