"""Which hash slots of a Redis Cluster a process may not trust yet: those that changed owner
a moment ago.

When a primary fails, writes made before its replica takes over cannot reach its slots:
each process that made one remembers it and applies it (deletes the entry, moves the
generation) as soon as the new primary answers (``cache.resilient``, in the background).
Until every process has done so, the new primary may hold entries those writes replaced.
So each process watches the owner of every slot in its client's map: a slot that changed
owner is read around (a miss: the database answers) for ``grace`` seconds from the moment
this process saw the change, long enough for every other process's remembered writes to
land. A resharding step changes owners too and costs the same short bypass.

The first map a process sees is trusted: a process started during a failover cannot know
what the old primary held.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis.asyncio.cluster import RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot


class SlotOwners:
    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._seen: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        self._until: dict[int, float] = {}  # slot -> until when it is not trusted
        self._primed = False

    def untrusted(self, cluster: RedisCluster, keys: Sequence[str]) -> list[bool] | None:
        """For each key just read: whether its slot is not to be trusted now (None: all
        are trusted). Called after the read, so that a change of owner the read itself
        ran into (a redirection, a refreshed map) counts."""
        slots = cluster.nodes_manager.slots_cache
        if not self._primed and slots:
            # Every slot's owner at first sight: a slot first read after a change of owner
            # must still count as changed.
            for slot, owners in slots.items():
                if owners:
                    self._seen[slot] = owners[0].name
            self._primed = True
        now = time.monotonic()
        untrusted: list[bool] | None = None
        for at, key in enumerate(keys):
            slot = key_slot(key.encode())
            holders = slots.get(slot)
            if not holders:
                continue
            owner = holders[0].name
            seen = self._seen[slot]
            if seen != owner:
                self._seen[slot] = owner
                if seen is not None:
                    self._until[slot] = now + self.grace
            until = self._until.get(slot)
            if until is None:
                continue
            if until <= now:
                del self._until[slot]
                continue
            if untrusted is None:
                untrusted = [False] * len(keys)
            untrusted[at] = True
        return untrusted
