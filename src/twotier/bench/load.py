"""``twotier bench load``: ``twotier load`` beside boto3's own ``batch_writer`` (what a user
would write, ``benchmarks/peers/boto3_batch_writer.py``), on the same generated file into the
same DynamoDB table, each starting from an empty table. Rows per second, side by side."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from twotier.bootstrap import build_store, declared_resources
from twotier.config import Settings
from twotier.dataset import write_csv
from twotier.loader import load_csv
from twotier.store.dynamo import DynamoStore
from twotier.store.dynamo_client import DynamoTarget


@dataclass
class LoadFigure:
    loader: str
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass
class LoadReport:
    config: dict[str, Any]
    figures: list[LoadFigure]

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "figures": [asdict(f) | {"rows_per_second": f.rows_per_second} for f in self.figures],
        }


async def _emptied(settings: Settings) -> tuple[str, DynamoTarget]:
    """Empty the heroes' table (made if missing): its name and where it is."""
    store = build_store(settings)
    assert isinstance(store, DynamoStore)
    try:
        await store.init_schema()
        heroes = store.rows("heroes")
        await heroes.empty()
        return heroes.table, store.target
    finally:
        await store.close()


async def _count(settings: Settings) -> int:
    store = build_store(settings)
    try:
        return await store.rows("heroes").count()
    finally:
        await store.close()


def _timed_twotier(settings: Settings, path: Path) -> LoadFigure:
    started = time.perf_counter()
    _reader, loaded = asyncio.run(load_csv(settings, path, "heroes"))
    return LoadFigure("twotier load", loaded, time.perf_counter() - started)


def _timed_peer(path: Path, table: str, target: DynamoTarget, peers: Path) -> LoadFigure:
    env = dict(os.environ)
    if target.local and "AWS_ACCESS_KEY_ID" not in env:
        env |= {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
    done = subprocess.run(
        [
            sys.executable,
            str(peers / "boto3_batch_writer.py"),
            str(path),
            table,
            target.endpoint_url or "",
            target.region,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"boto3_batch_writer failed: {done.stderr[-500:]}")
    peer = json.loads(done.stdout.strip().splitlines()[-1])
    return LoadFigure("boto3 batch_writer", int(peer["rows"]), float(peer["seconds"]))


def compare_loads(settings: Settings, rows: int, peers: Path) -> LoadReport:
    """Load ``rows`` generated heroes with each loader into the emptied table."""
    resource = next(r for r in declared_resources(settings) if r.name == "heroes")
    figures: list[LoadFigure] = []
    with tempfile.TemporaryDirectory(prefix="twotier-bench-load-") as work:
        path = Path(work) / "heroes.csv"
        with path.open("w", encoding="utf-8", newline="") as out:
            write_csv(out, resource, rows, 0)
        table, target = asyncio.run(_emptied(settings))
        figures.append(_timed_twotier(settings, path))
        if asyncio.run(_count(settings)) != rows:
            raise RuntimeError("twotier load left another number of rows")
        asyncio.run(_emptied(settings))
        figures.append(_timed_peer(path, table, target, peers))
        if asyncio.run(_count(settings)) != rows:
            raise RuntimeError("boto3's batch_writer left another number of rows")
    config = {
        "rows": rows,
        "database": "dynamodb",
        "endpoint": target.endpoint_url or f"AWS {target.region}",
        "date": time.strftime("%Y-%m-%d"),
    }
    return LoadReport(config, figures)
