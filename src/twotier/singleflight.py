"""Single-flight: concurrent callers asking for the same key share one computation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """``do_many(keys, compute)``: one ``compute`` call for the keys not under way, every
    caller handed each key's answer.

    The computation is a task of its own, so a caller that is cancelled (a client that hung
    up) does not cancel it for the others; each caller waits on a future of its own, set
    by that task as soon as the computation ends (one turn of the loop to wake the caller,
    not the three a shared future behind ``asyncio.shield`` costs: see ``batching``).
    """

    def __init__(self) -> None:
        # key -> the futures of the callers waiting for its computation under way
        self._flights: dict[str, list[asyncio.Future[T]]] = {}
        # The computations under way: the loop holds its tasks weakly.
        self._running: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._flights)

    async def do_many(
        self, keys: Sequence[str], compute: Callable[[list[str]], Awaitable[Mapping[str, T]]]
    ) -> dict[str, T]:
        loop = asyncio.get_running_loop()
        unique = list(dict.fromkeys(keys))
        new = [key for key in unique if key not in self._flights]
        if new:
            started: dict[str, list[asyncio.Future[T]]] = {key: [] for key in new}
            self._flights.update(started)
            run = loop.create_task(self._compute(compute, started))
            self._running.add(run)
            run.add_done_callback(self._running.discard)
        mine: dict[str, asyncio.Future[T]] = {}
        for key in unique:
            future = mine[key] = loop.create_future()
            self._flights[key].append(future)
        try:
            return {key: await future for key, future in mine.items()}
        except asyncio.CancelledError:
            for future in mine.values():  # nothing left for the computation to hand here
                future.cancel()
            raise

    async def _compute(
        self,
        compute: Callable[[list[str]], Awaitable[Mapping[str, T]]],
        started: dict[str, list[asyncio.Future[T]]],
    ) -> None:
        try:
            await hand_out(compute(list(started)), started)
        finally:
            self._land(started)

    def _land(self, started: Mapping[str, list[asyncio.Future[T]]]) -> None:
        """The keys of a computation that ended are no longer under way (unless forgotten
        meanwhile, and under way again in another computation)."""
        for key, futures in started.items():
            if self._flights.get(key) is futures:
                del self._flights[key]

    def forget(self, key: str) -> None:
        """Let later callers start afresh (after a write, a run under way may be stale)."""
        self._flights.pop(key, None)


async def hand_out(
    call: Awaitable[Mapping[str, T | Exception]] | Awaitable[Mapping[str, T]],
    waiting: Mapping[str, Sequence[asyncio.Future[T]]],
) -> None:
    """Await ``call`` (answers by name), and hand each name's waiting callers its answer at
    once: a value, an exception the call answered that name with, or the call's own error
    (cancelled with it, if it is cancelled)."""
    try:
        results = await call
    except asyncio.CancelledError:
        for futures in waiting.values():
            for future in futures:
                future.cancel()
        raise
    except Exception as error:
        for futures in waiting.values():
            hand(futures, error)
        return
    for name, futures in waiting.items():
        if name in results:
            hand(futures, results[name])
        else:  # a call that forgot a name: its callers must not wait for ever
            hand(futures, LookupError(f"no answer for {name!r}"))


def hand(futures: Sequence[asyncio.Future[T]], answer: T | Exception) -> None:
    """Each caller still waiting its answer: a value, or an exception to raise."""
    for future in futures:
        if future.done():  # its caller left
            continue
        if isinstance(answer, Exception):
            future.set_exception(answer)
        else:
            future.set_result(answer)
