"""A write-through on a Redis Cluster waits for a replica of each primary it wrote to
(``WAIT 1``): one that does not confirm in time (here: stopped) is counted, and the write
is made all the same (the cache never refuses a committed write for it). On a new cluster
too, whose ``CLUSTER SLOTS`` (redis-py's slot map) lists no replica until it has
replicated something: the cache asks each primary how many replicas it has."""

from __future__ import annotations

import os
import signal

from redis.crc import key_slot

from tests.conftest import redis_namespace
from tests.own_servers import OwnRedisCluster
from twotier.cache.base import Entry
from twotier.cache.redis import RedisCache
from twotier.telemetry import REGISTRY


def unreplicated() -> float:
    return REGISTRY.get_sample_value("twotier_cache_unreplicated_writes_total") or 0.0


async def test_a_write_no_replica_confirmed_is_counted_and_made(
    own_cluster: OwnRedisCluster,
) -> None:
    namespace = redis_namespace()
    cache = RedisCache(own_cluster.url, namespace=namespace, timeout=2, replica_wait=0.1)
    owner = own_cluster.owner(key_slot(f"{namespace}:k".encode()))
    ids = {int(node["port"]): node["id"] for node in own_cluster.nodes()}
    [replica] = [int(node["port"]) for node in own_cluster.nodes() if node["primary"] == ids[owner]]
    try:
        os.kill(own_cluster.processes[replica].pid, signal.SIGSTOP)
        try:
            # The first write to a new cluster: waited for, the wait runs out: counted, made.
            counted = unreplicated()
            assert await cache.write([("k", Entry(1, b"one"), 60)], {}, 60) == [True]
            assert unreplicated() == counted + 1
            # Right after, that primary is not waited for (a dead replica must not add the
            # wait to every write): as much at risk, so counted too.
            assert await cache.write([("k", Entry(2, b"two"), 60)], {}, 60) == [True]
            assert unreplicated() == counted + 2
        finally:
            os.kill(own_cluster.processes[replica].pid, signal.SIGCONT)
        assert await cache.get("k") == Entry(2, b"two")
    finally:
        await cache.close()
