"""What a process knows of a Redis Cluster's shape beyond redis-py's slot map: which hash
slots it may not trust yet (those that changed owner a moment ago), and how many replicas
each primary has.

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

import asyncio
import time
from collections.abc import Iterable, Sequence

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import ResponseError


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


class ReplicaCounts:
    """How many replicas each primary has, as the primary itself says (``INFO
    replication``), asked again every ``fresh`` seconds. Not read from the slot map:
    ``CLUSTER SLOTS``, which redis-py's map is made from, leaves a replica out until it has
    replicated something (a new cluster's replicas, one resyncing), and a map made then
    would keep saying "no replica" until something made redis-py read it again."""

    def __init__(self, fresh: float) -> None:
        self.fresh = fresh
        self._known: dict[str, tuple[int, float]] = {}  # primary -> (replicas, until when)

    def of(self, primary: str) -> int:
        return self._known.get(primary, (0, 0.0))[0]

    async def learn(self, cluster: RedisCluster, primaries: Iterable[ClusterNode]) -> None:
        """Ask the primaries whose count is not fresh, at once."""
        now = time.monotonic()
        stale = [node for node in primaries if self._known.get(node.name, (0, 0.0))[1] <= now]
        if not stale:
            return
        answers = await asyncio.gather(
            *(
                cluster.execute_command("INFO", "replication", target_nodes=[node])
                for node in stale
            ),
            return_exceptions=True,
        )
        for node, answer in zip(stale, answers, strict=True):
            if isinstance(answer, ResponseError):
                count = 0  # a cache that does not tell (no replicas it would promote)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                count = int(answer.get("connected_slaves", 0))
            self._known[node.name] = (count, now + self.fresh)
