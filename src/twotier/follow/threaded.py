"""A change log read by a blocking client on a thread of its own, handed to the event loop.

The replication protocols' Python clients block (python-mysql-replication on PyMySQL,
psycopg2's replication connection), so each reads on a thread and hands every batch over
through a bounded queue: a follower that falls behind slows the reading down instead of
holding the log in memory. The thread ends with the error that stopped it as its last
item, raised in the follower's task.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Callable

from twotier.follow.changes import Batch

#: What the reading thread calls with each batch (or the error that ended it); it waits for
#: room in the queue, or returns at once once the reading is to stop.
HandOver = Callable[[Batch | BaseException], None]
#: The reading itself: hands batches over until the event is set (checked at least every
#: ``wake`` seconds), then returns.
Reading = Callable[[HandOver, threading.Event], None]

#: Batches read ahead of the follower at most.
READ_AHEAD = 256


async def read_on_thread(read: Reading, name: str, wake: float) -> AsyncGenerator[Batch, None]:
    """The batches ``read`` hands over from its thread, until the caller stops taking them;
    ``wake``: at most how long the thread takes to notice that."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Batch | BaseException] = asyncio.Queue(READ_AHEAD)
    stop = threading.Event()

    def hand_over(item: Batch | BaseException) -> None:
        future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                future.result(timeout=wake)
                return
        future.cancel()

    def guarded() -> None:
        try:
            read(hand_over, stop)
        except BaseException as error:  # a bug: surface it, do not hang the follower
            hand_over(error)

    reader = threading.Thread(target=guarded, name=name, daemon=True)
    reader.start()
    try:
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        await asyncio.to_thread(reader.join, 2 * wake)
