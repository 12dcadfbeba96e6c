"""One follower per database and cache namespace: change log in, invalidations out.

**Lease.** Any number of followers may run (a ``twotier follow`` service with two tasks,
every ``serve --follow`` process); one holds the lease, a key in the cache it renews every
``lease / 5`` seconds, and follows. The others try every second and take over within
``lease`` seconds of the holder's death. A holder that finds the lease taken stops at once.
Two followers overlapping for a moment do no harm: invalidations are idempotent.

**Position.** The position after the last change applied lives in the cache too, beside the
entries it speaks for: a cache emptied or lost (a flushed or restarted Redis, a new
process's in-process cache) loses its position with its entries, and a position lost with
the entries still there (evicted, expired, a purged binlog) makes the follower empty the
namespace and start from the log's end — stale entries are never kept, whatever happens.
The position is stored after the changes before it are in the cache, at most every
``_SAVE_EVERY`` seconds: after a crash the last changes are applied again, harmlessly.

**Applying.** A batch's changes (a transaction's) are applied together, through each
resource's policy, exactly as write-throughs (one cache round trip where the cache can); a
cache that does not answer stops the follower where it is, to retry from the last position
saved.

**Hearing the log.** Every change log sends a batch at least every second while it is
healthy (heartbeats while quiet). A holder that hears nothing for ``_SILENCE`` seconds (a
link half-open: the server gone without a word, a firewall dropping packets) gives the
lease up, so that a follower on a sound link takes over, and waits a lease before it tries
again: the handover takes at most ``_SILENCE`` and a standby's next try. How long ago the
holder last heard the log is ``twotier_follow_heartbeat_age_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from twotier.cache.base import Entry
from twotier.config import Settings
from twotier.errors import (
    CacheUnavailable,
    ChangeLogUnavailable,
    FollowError,
    FollowRefused,
    PositionLost,
    StoreUnavailable,
)
from twotier.follow.changes import Batch, ChangeLog, apply_changes
from twotier.service import Service
from twotier.telemetry import FOLLOW_RESETS, follow_heard

log = logging.getLogger("twotier.follow")

LEASE_KEY = "follow:lease"
POSITION_KEY = "follow:position"
#: Seconds between saves of the position while changes flow.
_SAVE_EVERY = 0.1
#: Seconds between saves of an unchanged position (a quiet log), so it never expires.
_REFRESH_EVERY = 60.0
#: How long a position is kept without being saved again (a quiet log saves it on every
#: heartbeat, so only a follower stopped this long loses it).
_POSITION_TTL = 7 * 24 * 3600.0
#: Waits between attempts while a tier is down, growing to the last.
_BACKOFF = (0.2, 0.5, 1.0, 2.0)
#: Seconds without a batch (a change or a heartbeat: each log sends one every second) after
#: which the log is taken for gone.
_SILENCE = 5.0
#: A lease given up: held for this long more, which is no time at all.
_LET_GO = 0.001


class LeaseLost(FollowError):
    """Another follower holds the lease now."""


class LogSilent(ChangeLogUnavailable):
    """Nothing came from the change log for ``_SILENCE`` seconds: the link is gone."""


class Follower:
    def __init__(
        self,
        service: Service,
        change_log: ChangeLog,
        *,
        lease: float = 5.0,
        owner: str | None = None,
    ) -> None:
        self._service = service
        self._log = change_log
        if service.follower_state is None:
            raise FollowRefused("this service was composed without a follower state")
        self._state = service.follower_state
        self._lease = lease
        # Both belong to one database: a log position means nothing in another.
        self._lease_key = f"{service.database_id}:{LEASE_KEY}"
        self._position_key = f"{service.database_id}:{POSITION_KEY}"
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}:{secrets.token_hex(4)}"
        #: Whether it holds the lease and reads the log now.
        self.following = False
        self._held_until = 0.0
        self._saved_at = 0.0
        self._saved: str | None = None
        self._heard = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        """Follow whenever this follower holds the lease, until ``stop`` is set."""
        failures = 0
        while not stop.is_set():
            given_up = False
            try:
                if await self._state.hold(self._lease_key, self.owner, self._lease):
                    self._held_until = time.monotonic() + self._lease
                    log.info("following %s (lease held by %s)", self._log.name, self.owner)
                    await self._follow(stop)
                    failures = 0
                    continue
                failures = 0
            except LeaseLost:
                log.warning("lease lost to another follower: standing by")
            except (ChangeLogUnavailable, StoreUnavailable) as error:
                failures += 1
                log.warning("follower paused, lease given up: %s", error)
                given_up = True
            except CacheUnavailable as error:
                failures += 1
                log.warning("follower paused: %s", error)
            except FollowRefused:
                raise
            except Exception:  # a bug, or a fault not sorted yet: never stop following
                failures += 1
                log.exception("follower failed; starting again from its saved position")
            finally:
                self.following = False
                follow_heard(None)
            if given_up:
                # Another follower may hear the log (its link sound): let it take over.
                await self._let_go()
                await _wait(stop, self._lease)
            await _wait(stop, _BACKOFF[min(failures, len(_BACKOFF) - 1)] if failures else 1.0)

    async def _follow(self, stop: asyncio.Event) -> None:
        position = await self._position()
        batches = self._log.batches(position)
        self.following = True
        self._heard = time.monotonic()
        follow_heard(lambda: self._heard)
        # The next batch, awaited across renewals: cancelling a wait on the log would end it.
        pending: asyncio.Future[Batch] | None = None
        try:
            while not stop.is_set():
                if pending is None:
                    pending = asyncio.ensure_future(anext(batches))
                wait = min(self._lease / 5, _SILENCE)
                done, _ = await asyncio.wait({pending}, timeout=wait)
                if not done:
                    silent = time.monotonic() - self._heard
                    if silent >= _SILENCE:  # renewing now would keep a dead link the leader
                        await self._let_go()  # now, not after the dead reader is closed
                        raise LogSilent(f"nothing from the {self._log.name} for {silent:.1f} s")
                    await self._renew()
                    continue
                self._heard = time.monotonic()
                try:
                    batch = pending.result()
                except PositionLost as error:
                    log.warning("%s: emptying the cache and following from now", error)
                    await self._reset()
                    return
                finally:
                    pending = None
                await self._apply(batch)
                await self._renew()
                await self._save(batch.position)
        finally:
            # No longer reading, whatever the closing below takes (a reader on a dead link
            # may need seconds to notice): the flag and the gauge say so at once.
            self.following = False
            follow_heard(None)
            if pending is not None:
                pending.cancel()
                await asyncio.wait({pending})
            await batches.aclose()
            if stop.is_set() and self._saved is not None:
                await self._save(self._log.settled(self._saved), force=True)

    async def _position(self) -> str:
        """Where to start: the saved position, else (a new or emptied cache, a lost
        position) the log's end, after emptying the namespace."""
        saved = await self._state.get(self._position_key)
        if saved is not None and saved.body:
            return saved.body.decode()
        return await self._reset()

    async def _reset(self, position: str | None = None) -> str:
        """Empty the namespace and follow on from ``position`` (default: the log's end)."""
        position = position if position is not None else await self._log.now()
        await self._service.cache.clear()  # what was missed is unknown: nothing may stay
        FOLLOW_RESETS.inc()
        # The clear took the lease with it: take it back before anyone else can.
        if not await self._state.hold(self._lease_key, self.owner, self._lease):
            raise LeaseLost()
        await self._save(position, force=True)
        return position

    async def _apply(self, batch: Batch) -> None:
        await apply_changes(self._service, batch.changes, batch.committed_at)
        if any(change.whole_table for change in batch.changes):
            # A bulk load: any row of the table may have changed or gone.
            log.info("a table was loaded whole: emptying the cache")
            await self._reset(batch.position)

    async def _let_go(self) -> None:
        """Give the lease up at once, if this follower still holds it (best effort: else it
        ends with its time)."""
        with contextlib.suppress(CacheUnavailable):
            await self._state.hold(self._lease_key, self.owner, _LET_GO)
        self._held_until = 0.0

    async def _renew(self) -> None:
        now = time.monotonic()
        if self._held_until - now > self._lease * 4 / 5:
            return
        if not await self._state.hold(self._lease_key, self.owner, self._lease):
            raise LeaseLost()
        self._held_until = now + self._lease

    async def _save(self, position: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force:
            if position == self._saved and now - self._saved_at < _REFRESH_EVERY:
                return
            if now - self._saved_at < _SAVE_EVERY:
                return
        # Versions from the clock: a later save always replaces an earlier one.
        await self._state.put_if_newer(
            self._position_key, Entry(time.time_ns(), position.encode()), _POSITION_TTL
        )
        if position != self._saved:
            await self._log.saved(position)
        self._saved, self._saved_at = position, now


def wanted(settings: Settings) -> bool:
    """Does this server run a follower (``TWOTIER_FOLLOW``)? ``auto``: on SQLite, which
    nothing else would follow."""
    if settings.follow == "auto":
        return settings.database_url.startswith("sqlite")
    return settings.follow == "on"


@asynccontextmanager
async def following(service: Service, settings: Settings) -> AsyncIterator[None]:
    """A follower beside the server for as long as this lasts, if the settings want one
    (FollowRefused, at once, if the database cannot be followed)."""
    if not wanted(settings):
        yield
        return
    from twotier.follow.sources import change_log_for

    change_log = change_log_for(service, settings.cache_namespace)
    # Refuse now, not in the background; and move nothing (now() would move PostgreSQL's
    # slot past what the cache has not taken yet).
    await change_log.prepare()
    stop = asyncio.Event()
    task = asyncio.create_task(Follower(service, change_log).run(stop), name="follower")
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait({task}, timeout=10)
        if not task.done():
            task.cancel()
        await change_log.close()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
