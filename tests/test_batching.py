"""TickBatcher: calls of one turn of the event loop, answered by one run."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from twotier.batching import TickBatcher


class Runs:
    def __init__(self) -> None:
        self.batches: list[dict[str, int]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail: Exception | None = None

    async def __call__(self, wanted: Mapping[str, int]) -> dict[str, int]:
        self.batches.append(dict(wanted))
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return {name: argument * 10 for name, argument in wanted.items()}


async def test_one_run_per_turn_and_a_name_once() -> None:
    runs = Runs()
    batcher = TickBatcher(runs)
    answers = await asyncio.gather(*(batcher.load(f"k{n % 5}", n % 5) for n in range(12)))
    assert answers == [(n % 5) * 10 for n in range(12)]
    assert runs.batches == [{f"k{n}": n for n in range(5)}]
    assert await batcher.load("k1", 1) == 10  # a later turn: a run of its own
    assert len(runs.batches) == 2


async def test_a_cancelled_caller_leaves_the_run_to_the_others() -> None:
    runs = Runs()
    runs.release.clear()
    batcher = TickBatcher(runs)
    leaving = asyncio.create_task(batcher.load("a", 1))
    staying = asyncio.create_task(batcher.load("a", 1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    leaving.cancel()
    runs.release.set()
    assert await staying == 10
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_every_caller_gets_the_runs_error() -> None:
    runs = Runs()
    runs.fail = ConnectionError("down")
    batcher = TickBatcher(runs)
    answers = await asyncio.gather(
        batcher.load("a", 1), batcher.load("b", 2), return_exceptions=True
    )
    assert all(isinstance(answer, ConnectionError) for answer in answers)
    assert len(runs.batches) == 1
