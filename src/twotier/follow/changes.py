"""What a change log yields: committed row changes of declared tables, in commit order.

A change log is read from a *position* (an opaque string the log understands) and yields
batches: the row changes of one or more committed transactions and the position just after
them, so that a follower that stored that position misses nothing when it starts again
from it. A batch without changes is a heartbeat: the log is alive and caught up.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from twotier.resources import Record
from twotier.telemetry import FOLLOW_APPLIED, FOLLOW_LAG

if TYPE_CHECKING:
    from twotier.service import Service


@dataclass(frozen=True, slots=True)
class Change:
    """One row's change: ``before`` None for an insert, ``after`` None for a deletion; both
    None for a change of the whole table (a bulk load), which leaves nothing of the
    resource cached trustworthy."""

    resource: str
    before: Record | None
    after: Record | None

    @property
    def whole_table(self) -> bool:
        return self.before is None and self.after is None


@dataclass(frozen=True, slots=True)
class Batch:
    """Changes up to ``position``; ``committed_at``: when the last of them committed
    (seconds since 1970, as precise as the log records it), None for a heartbeat."""

    changes: tuple[Change, ...]
    position: str
    committed_at: float | None = None


class ChangeLog(Protocol):
    """A database's change log, for the declared resources."""

    @property
    def name(self) -> str:
        """What is followed, for logs and metrics (no secrets): ``mysql binlog``."""

    async def prepare(self) -> None:
        """Make what following needs on the database (a publication, a slot), moving no
        position; FollowRefused, in one line, if the database cannot be followed."""

    async def now(self) -> str:
        """The position of the log's end: following from it yields only what comes next."""

    def batches(self, position: str) -> AsyncGenerator[Batch, None]:
        """Committed changes after ``position``, in commit order, until closed; raises
        PositionLost or ChangeLogUnavailable."""

    async def saved(self, position: str) -> None:
        """The follower saved ``position``: what comes before it will not be asked for
        again (a log that keeps it for this follower may let it go)."""

    def settled(self, position: str) -> str:
        """Where a follower that stopped having applied ``position`` stands: past it where
        the log itself moved on over nothing followed (PostgreSQL's slot, confirmed on its
        own by the driver), so that a restart does not find the log past its position."""

    async def close(self) -> None: ...


async def apply_changes(
    service: Service, changes: Sequence[Change], committed_at: float | None
) -> None:
    """Invalidate what committed ``changes`` make stale, through each resource's policy
    (the follower's batches, the stream records a Lambda is given); count them, and the
    lag from ``committed_at``. CacheUnavailable if the cache did not take them."""
    if not changes:
        return
    by_resource: dict[str, list[tuple[Record | None, Record | None]]] = defaultdict(list)
    for change in changes:
        if not change.whole_table:  # the caller empties the cache for those
            by_resource[change.resource].append((change.before, change.after))
    await asyncio.gather(
        *(service.resource(name).changed(rows) for name, rows in by_resource.items())
    )
    FOLLOW_APPLIED.inc(len(changes))
    if committed_at is not None:
        FOLLOW_LAG.observe(max(0.0, time.time() - committed_at))
