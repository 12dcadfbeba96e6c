"""The tutorial app, written by hand: FastAPI, SQLAlchemy (async) and redis-py, cache-aside.

A read asks Redis; on a miss it reads the row through SQLAlchemy, answers it and stores it
with a TTL. What most "add Redis to FastAPI" guides end with.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from common import DATABASE_URL, POOL_SIZE, PREFIX, REDIS_URL, SELECT_HERO, TTL
from fastapi import FastAPI, HTTPException, Response
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

engine = create_async_engine(DATABASE_URL, pool_size=POOL_SIZE, max_overflow=POOL_SIZE)
redis = Redis.from_url(REDIS_URL)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    yield
    await redis.aclose()
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/heroes/{hero_id}")
async def read_hero(hero_id: int) -> Response:
    key = f"{PREFIX}:hero:{hero_id}"
    cached = await redis.get(key)
    if cached is None:
        async with engine.connect() as conn:
            row = (await conn.execute(text(SELECT_HERO), {"id": hero_id})).mappings().first()
        if row is None:
            raise HTTPException(status_code=404, detail="no such hero")
        cached = orjson.dumps(dict(row))
        await redis.set(key, cached, ex=TTL)
    return Response(cached, media_type="application/json")
