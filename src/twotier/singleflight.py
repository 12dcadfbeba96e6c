"""Single-flight: concurrent callers asking for the same key share one computation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Task[T]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def do(self, key: str, compute: Callable[[], Awaitable[T]]) -> T:
        """Run ``compute`` unless a run for ``key`` is under way; either way, await its result.

        The run is a task of its own, so a caller that is cancelled (a client that hung up)
        does not cancel it for the others waiting on it.
        """
        task = self._flights.get(key)
        if task is None:
            task = asyncio.ensure_future(compute())
            self._flights[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def forget(self, key: str) -> None:
        """Let later callers start afresh (after a write, a run under way may be stale)."""
        self._flights.pop(key, None)

    def _finished(self, key: str, task: asyncio.Task[T]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # mark retrieved: the waiters have had it, or there were none
