"""The Redis client's URLs, and which errors mean the link failed."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException

from twotier.cache.redis_client import is_cluster_url, link_failed, node_url


def test_cluster_urls_are_told_apart_and_name_their_nodes() -> None:
    assert is_cluster_url("redis+cluster://cfg.example:6379")
    assert is_cluster_url("rediss+cluster://u:p@cfg.example:6379?ssl_ca_certs=/ca.pem")
    assert not is_cluster_url("redis://127.0.0.1:6379/0")
    assert not is_cluster_url("rediss://127.0.0.1:6379/0")
    # A node of the cluster: its address, the cluster's credentials and TLS options.
    assert (
        node_url("rediss+cluster://u:p@cfg.example:6379?ssl_ca_certs=/ca.pem", "10.0.0.7", 6380)
        == "rediss://u:p@10.0.0.7:6380?ssl_ca_certs=/ca.pem"
    )
    assert node_url("redis+cluster://cfg:7000", "::1", 7001) == "redis://[::1]:7001"


def _raised_in(filename: str, error: Exception) -> Exception:
    """``error`` as if raised by code in ``filename``, called from redis-py."""
    code = compile("raise error", filename, "exec")
    calling = compile(
        "run()", "/venv/lib/python3.11/site-packages/redis/asyncio/cluster.py", "exec"
    )
    try:
        exec(calling, {"run": lambda: exec(code, {"error": error})})
    except Exception as raised:
        return raised
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("error", "where", "failed"),
    [
        (RedisConnectionError("refused"), "/anywhere.py", True),
        (OSError("reset"), "/anywhere.py", True),
        (TimeoutError(), "/anywhere.py", True),
        (RedisClusterException("Redis Cluster cannot be connected"), "/anywhere.py", True),
        # The transport's own errors, let through by redis-py when a connection closes.
        (
            AttributeError("'NoneType' object has no attribute 'writelines'"),
            "/usr/lib/python3.11/asyncio/streams.py",
            True,
        ),
        (RuntimeError("the handler is closed"), "uvloop/handles/handle.pyx", True),
        # The same kinds raised by our own code are bugs, never a lost link.
        (AttributeError("oops"), "/src/twotier/cache/redis.py", False),
        (ValueError("bad"), "/usr/lib/python3.11/asyncio/streams.py", False),
    ],
)
def test_a_lost_link_is_told_from_a_bug(error: Exception, where: str, failed: bool) -> None:
    assert link_failed(_raised_in(where, error)) is failed


def test_errors_not_raised_through_redis_py_are_not_a_lost_link() -> None:
    with pytest.raises(AttributeError) as raised:
        raise AttributeError("ours")
    assert not link_failed(raised.value)
