"""The invalidation messages the processes sharing one cache send each other, and the
channel that carries them (a near-cache reads them; the Redis cache sends them with its
writes, in the same round trip)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

#: A message's key line that says every key changed (a clear).
EVERYTHING = "*"


def joined(messages: Sequence[str]) -> list[str]:
    """``messages`` with those of one sender made one: a message is a line naming its
    sender, then a line per key it changed (or ``*``: everything). What a bus sends in one
    round trip (the write-throughs of a loop turn) is then one message a sender, not one a
    write; and processes that do not join (an older version, in a rolling deploy) read it
    as the same keys."""
    by_sender: dict[str, list[str]] = {}
    for message in messages:
        sender, _, keys = message.partition("\n")
        by_sender.setdefault(sender, []).append(keys)
    return [
        sender + "\n" + (EVERYTHING if EVERYTHING in keys else "\n".join(keys))
        for sender, keys in by_sender.items()
    ]


class InvalidationBus(Protocol):
    """A broadcast channel between the processes sharing one cache. Its messages are
    ``joined``'s: a sender's line, then keys."""

    async def publish(self, message: str) -> None: ...

    def messages(self) -> AsyncIterator[str | None]:
        """Messages as they arrive. ``None`` first, once subscribed (and after each
        re-subscription): whatever was sent before it may have been missed. Ends or raises
        when the subscription breaks."""
        ...
