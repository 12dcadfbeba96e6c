"""The process's Redis client: one Redis (``redis://``, ``rediss://``), or a Redis Cluster
(``redis+cluster://``, ``rediss+cluster://``: ElastiCache with cluster mode enabled,
ElastiCache Serverless), reached through any of its nodes or its configuration endpoint.
"""

from __future__ import annotations

import traceback
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

RedisClient = aioredis.Redis | RedisCluster

_CLUSTER_SUFFIX = "+cluster"


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme.endswith(_CLUSTER_SUFFIX)


def _plain(url: str) -> str:
    """The URL redis-py parses: the scheme without ``+cluster``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=parts.scheme.removesuffix(_CLUSTER_SUFFIX)))


def node_url(url: str, host: str, port: int) -> str:
    """A URL of one node of the cluster at ``url``: the same credentials and TLS options."""
    parts = urlsplit(_plain(url))
    credentials = parts.netloc.rpartition("@")[0]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    netloc = f"{credentials}@{address}" if credentials else address
    return urlunsplit(parts._replace(netloc=netloc, path=""))


def redis_client(url: str, timeout: float) -> RedisClient:
    """The process's connection pool (one per node on a cluster): the cache's, and the rate
    limiter's."""
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "decode_responses": False,
        "max_connections": 256,
    }
    if is_cluster_url(url):
        # No retries of its own: redis-py would send a failed pipeline again whole, 0.25 s
        # later, after closing every connection under the other commands in flight; a
        # generation set late that way could undo a newer write's move. A failed call is
        # the cache layer's to handle (the database answers, the write is remembered); the
        # next call finds the cluster's new shape.
        return RedisCluster.from_url(_plain(url), retry=Retry(NoBackoff(), 0), **options)
    return aioredis.from_url(url, **options)


async def initialized(client: RedisClient) -> None:
    """Before each command on a cluster: redis-py 8.1 lets the first commands of a new
    ``RedisCluster`` (and the first after it lost a node) set it up side by side, closing
    each other's connections (seen here: ``ConnectionError``, ``AttributeError`` on 4 of 50
    concurrent first commands). Its own ``initialize`` is locked and does nothing once done,
    so calling it first makes one set-up, alone, and costs nothing after."""
    if isinstance(client, RedisCluster):
        await client.initialize()


def link_failed(error: BaseException) -> bool:
    """Whether ``error`` is the client's way of saying the server could not be reached.

    Mostly ``RedisError`` and ``OSError``; but when a connection is closed under a command
    (a peer reset, a cluster node replaced during a failover) redis-py 8.1 lets the
    transport's own error through (redis/redis-py#4287; seen here in the failover test:
    ``AttributeError`` from asyncio's streams, ``RuntimeError`` from uvloop's). Those count
    too when redis-py was running the command and the error did not come from our code.
    """
    if isinstance(error, RedisError | RedisClusterException | OSError | TimeoutError):
        return True  # RedisClusterException: no node of the cluster could be reached
    if not isinstance(error, AttributeError | TypeError | RuntimeError):
        return False
    frames = traceback.extract_tb(error.__traceback__)
    return (
        bool(frames)
        and any("/redis/" in frame.filename for frame in frames)
        and "/twotier/" not in frames[-1].filename
    )
