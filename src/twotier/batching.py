"""Calls made in one turn of the event loop, answered together by one call for all of them.

Under load, many requests are ready at once: with 64 connections a turn of the loop often
runs several reads that each miss. One by one, each costs its own round trips (a cache GET,
a database SELECT, a cache write: profiled at two thirds of a miss's time in the client
libraries' per-call work). Gathered, they cost one MGET, one SELECT … IN and one pipeline
for the lot, and nothing changes for a lone request but one hop through the loop's queue
(``call_soon``: it runs as soon as the requests already ready have had their turn).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeVar

from twotier.singleflight import settle

A = TypeVar("A")
T = TypeVar("T")


class TickBatcher(Generic[A, T]):
    """``load(name, argument)`` → ``run({name: argument, …})[name]``, one ``run`` per turn.

    ``run`` is a task of its own: a caller that is cancelled (a client that hung up) does
    not cancel it for the others. A name asked twice in one turn is run once. ``run`` may
    answer a name with an exception: that caller alone has it raised.
    """

    def __init__(
        self, run: Callable[[Mapping[str, A]], Awaitable[Mapping[str, T | Exception]]]
    ) -> None:
        self._run = run
        self._pending: dict[str, tuple[A, asyncio.Future[T]]] | None = None
        # The runs under way: the loop holds its tasks weakly.
        self._running: set[asyncio.Future[Mapping[str, T | Exception]]] = set()

    async def load(self, name: str, argument: A) -> T:
        pending = self._pending
        loop = asyncio.get_running_loop()
        if pending is None:
            pending = self._pending = {}
            loop.call_soon(self._flush)
        waiting = pending.get(name)
        if waiting is None:
            waiting = pending[name] = (argument, loop.create_future())
        return await asyncio.shield(waiting[1])

    def _flush(self) -> None:
        pending, self._pending = self._pending or {}, None
        wanted = {name: argument for name, (argument, _) in pending.items()}
        batch = asyncio.ensure_future(self._run(wanted))
        self._running.add(batch)
        batch.add_done_callback(self._running.discard)
        batch.add_done_callback(lambda done: _settle(done, pending))


def _settle(
    batch: asyncio.Future[Mapping[str, T | Exception]],
    pending: Mapping[str, tuple[object, asyncio.Future[T]]],
) -> None:
    """Hand each caller its part of the batch's result (or the batch's error)."""
    futures = {name: future for name, (_, future) in pending.items()}
    settle(batch, futures)
    for future in futures.values():  # mark retrieved: the callers have had it, or left
        if not future.cancelled():
            future.exception()
