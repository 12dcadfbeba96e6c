"""The seed's own Lambda handler, as the course project's guide has it be written: the
baseline of ``twotier bench seed``'s write phase (the original is not in this repository;
this is its pattern, reconstructed).

Each invocation connects to MySQL and to Redis afresh, writes each hero with an INSERT and a
COMMIT of its own and, with ``USE_CACHE``, SETs it in Redis (write-through) with a TTL.
Settings as the other peers' (``common.py``); the bench calls ``lambda_handler`` in its own
process, without HTTP (which only spares the seed time).
"""

from __future__ import annotations

import json
from typing import Any

import pymysql
import redis
from common import DATABASE_URL, PREFIX, REDIS_URL, TTL, mysql_params

FIELDS = ("name", "hero", "power", "xp", "color")
INSERT = "INSERT INTO superheroes (name, hero, power, xp, color) VALUES (%s, %s, %s, %s, %s)"


def _connect() -> pymysql.connections.Connection[Any]:
    return pymysql.connect(**mysql_params(DATABASE_URL), autocommit=False)


def lambda_handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    if event["REQUEST"] != "write":
        return {"statusCode": 400, "body": "the bench measures the seed's writes"}
    db = _connect()
    cache = redis.Redis.from_url(REDIS_URL)
    try:
        cursor = db.cursor()
        for hero in event["SQLS"]:
            values = [hero[field] for field in FIELDS] if isinstance(hero, dict) else hero
            cursor.execute(INSERT, values)
            db.commit()
            if event["USE_CACHE"] == "True":
                row = dict(zip(("id", *FIELDS), (cursor.lastrowid, *values), strict=True))
                cache.set(f"{PREFIX}:hero:{cursor.lastrowid}", json.dumps(row), ex=TTL)
        return {"statusCode": 200, "body": "write success"}
    finally:
        db.close()
        cache.close()
