"""The process's Redis client: one Redis (``redis://``, ``rediss://``), or a Redis Cluster
(``redis+cluster://``, ``rediss+cluster://``: ElastiCache with cluster mode enabled,
ElastiCache Serverless), reached through any of its nodes or its configuration endpoint.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

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
    if is_cluster_url(url):
        return RedisCluster.from_url(
            _plain(url),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=False,
            max_connections=256,
        )
    return aioredis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=False,
        max_connections=256,
    )
