"""What every peer app shares: where the data is, and the one query a user would write.

The peers are what a user would write or pick instead of twotier (see README.md here); the
bench (``twotier bench compare``) serves each with granian, as it serves twotier, and reads
the same table twotier reads. Settings come from the environment the bench sets.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

#: An async SQLAlchemy URL (``mysql+aiomysql://…``, ``postgresql+asyncpg://…``).
DATABASE_URL = os.environ.get("PEER_DATABASE_URL", "mysql+aiomysql://root@127.0.0.1:3306/twotier")
REDIS_URL = os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/0")
#: Each run's keys under a prefix of their own, so runs and peers never share entries.
PREFIX = os.environ.get("PEER_PREFIX", "peer")
TTL = 300
POOL_SIZE = 10

SELECT_HERO = "SELECT id, name, hero, power, xp, color FROM superheroes WHERE id = :id"


def mysql_params(url: str) -> dict[str, Any]:
    """A MySQL URL's parts as the drivers take them (pymysql, aiomysql, asyncmy)."""
    parts = urlsplit(url)
    return {
        "host": parts.hostname,
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "db": parts.path.lstrip("/"),
    }
