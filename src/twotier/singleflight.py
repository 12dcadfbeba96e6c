"""Single-flight: concurrent callers asking for the same key share one computation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[T]] = {}

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
            task.add_done_callback(partial(self._finished, key))
        return await asyncio.shield(task)

    async def do_many(
        self, keys: Sequence[str], compute: Callable[[list[str]], Awaitable[Mapping[str, T]]]
    ) -> dict[str, T]:
        """``do`` for many keys: one ``compute`` call for all keys that are not under way."""
        loop = asyncio.get_running_loop()
        new = [key for key in dict.fromkeys(keys) if key not in self._flights]
        if new:
            batch = asyncio.ensure_future(compute(new))
            started: dict[str, asyncio.Future[T]] = {}
            for key in new:
                future: asyncio.Future[T] = loop.create_future()
                started[key] = self._flights[key] = future
                future.add_done_callback(partial(self._finished, key))
            batch.add_done_callback(lambda done: settle(done, started))
        waiting = {key: self._flights[key] for key in dict.fromkeys(keys)}
        return {key: await asyncio.shield(future) for key, future in waiting.items()}

    def forget(self, key: str) -> None:
        """Let later callers start afresh (after a write, a run under way may be stale)."""
        self._flights.pop(key, None)

    def _finished(self, key: str, future: asyncio.Future[T]) -> None:
        if self._flights.get(key) is future:
            del self._flights[key]
        if not future.cancelled():
            future.exception()  # mark retrieved: the waiters have had it, or there were none


def settle(
    batch: asyncio.Future[Mapping[str, T]] | asyncio.Future[Mapping[str, T | Exception]],
    futures: Mapping[str, asyncio.Future[T]],
) -> None:
    """Hand each key's future its part of a batch result: a value, or an exception (the
    batch's, or one the batch answered that key with)."""
    for key, future in futures.items():
        if future.done():
            continue
        if batch.cancelled():
            future.cancel()
        elif (error := batch.exception()) is not None:
            future.set_exception(error)
        elif isinstance(answer := batch.result()[key], Exception):
            future.set_exception(answer)
        else:
            future.set_result(answer)
