"""Calls made in one turn of the event loop, answered together by one call for all of them.

Under load, many requests are ready at once: with 64 connections a turn of the loop often
runs several reads that each miss. One by one, each costs its own round trips (a cache GET,
a database SELECT, a cache write: profiled at two thirds of a miss's time in the client
libraries' per-call work). Gathered, they cost one MGET, one SELECT … IN and one pipeline
for the lot, and nothing changes for a lone request but one hop through the loop's queue
(the run's task starts as soon as the requests already ready have had their turn).

Each hop through the loop's queue is a whole turn of the loop when the process is busy
(every request ready in that turn runs first), so a call here costs two and no more: the
run's task starting, and the caller waking on its own future, which the run's task sets
itself. (A shared future behind ``asyncio.shield`` and a done-callback that hands out the
results each cost one more turn: measured, a write went through three such steps.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeVar

from twotier.singleflight import hand_out

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
        # name -> (argument, the futures of its callers: each its own, so that one caller's
        # cancellation cancels nothing but its own wait)
        self._pending: dict[str, tuple[A, list[asyncio.Future[T]]]] | None = None
        # The runs under way: the loop holds its tasks weakly.
        self._running: set[asyncio.Task[None]] = set()

    async def load(self, name: str, argument: A) -> T:
        loop = asyncio.get_running_loop()
        pending = self._pending
        if pending is None:
            pending = self._pending = {}
            # Its first step runs after the calls already ready: those of this turn join.
            run = loop.create_task(self._run_pending())
            self._running.add(run)
            run.add_done_callback(self._running.discard)
        future: asyncio.Future[T] = loop.create_future()
        waiting = pending.get(name)
        if waiting is None:
            pending[name] = (argument, [future])
        else:
            waiting[1].append(future)
        return await future

    async def _run_pending(self) -> None:
        pending, self._pending = self._pending or {}, None
        await hand_out(
            self._run({name: argument for name, (argument, _) in pending.items()}),
            {name: futures for name, (_, futures) in pending.items()},
        )
