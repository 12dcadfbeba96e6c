"""SQLite's price for durability: single-row writes through the store with the log synced at
every commit (``synchronous=FULL``, the default) and only at checkpoints (``NORMAL``), side by
side, in turns, on this machine's disk.

    .venv/bin/python benchmarks/sqlite_durability.py [--writes N] [--rounds R]

Each round creates N heroes one POST-sized write at a time (16 at once, as concurrent
requests would), then updates each once; it prints writes a second per mode and round.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from twotier.resources import load_resources
from twotier.store.sql import SQLStore

ROW = {"name": "Ada", "hero": "Captain Ada", "power": "math", "xp": 5, "color": "blue"}


async def round_of(folder: Path, mode: str, writes: int) -> tuple[float, float]:
    """Creates a second, updates a second."""
    store = SQLStore(
        f"sqlite:///{folder}/{mode}-{time.monotonic_ns()}.sqlite3",
        load_resources(None),
        sqlite_synchronous=mode,
    )
    await store.init_schema()
    rows = store.rows("heroes")
    gate = asyncio.Semaphore(16)
    ids: list[int] = []

    async def create(number: int) -> None:
        async with gate:
            [made] = await rows.create_many([ROW | {"xp": number}])
            ids.append(int(made.key))

    async def update(key: int) -> None:
        async with gate:
            await rows.update(key, {"xp": key + 1})

    try:
        started = time.perf_counter()
        await asyncio.gather(*(create(n) for n in range(writes)))
        created = writes / (time.perf_counter() - started)
        started = time.perf_counter()
        await asyncio.gather(*(update(key) for key in ids))
        updated = writes / (time.perf_counter() - started)
        return created, updated
    finally:
        await store.close()


async def main(writes: int, rounds: int) -> None:
    results: dict[str, list[tuple[float, float]]] = {"full": [], "normal": []}
    with tempfile.TemporaryDirectory(prefix="twotier-durability-", dir=".") as work:
        for number in range(rounds):
            for mode in ("full", "normal") if number % 2 == 0 else ("normal", "full"):
                created, updated = await round_of(Path(work), mode, writes)
                results[mode].append((created, updated))
                said = f"{created:7.0f} creates/s {updated:7.0f} updates/s"
                print(f"round {number + 1} {mode:6}: {said}")
    for mode, rates in results.items():
        creates = statistics.median(rate[0] for rate in rates)
        updates = statistics.median(rate[1] for rate in rates)
        print(f"median {mode:6}: {creates:7.0f} creates/s {updates:7.0f} updates/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    options = parser.parse_args()
    asyncio.run(main(options.writes, options.rounds))
