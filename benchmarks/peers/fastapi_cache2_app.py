"""FastAPI with fastapi-cache2's ``@cache`` on the route, over Redis; the row read through
SQLAlchemy (async). The decorator keys entries by the request and encodes the answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from common import DATABASE_URL, POOL_SIZE, PREFIX, REDIS_URL, SELECT_HERO, TTL
from fastapi import FastAPI, HTTPException
from fastapi_cache import FastAPICache
from fastapi_cache.backends.redis import RedisBackend
from fastapi_cache.decorator import cache
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

engine = create_async_engine(DATABASE_URL, pool_size=POOL_SIZE, max_overflow=POOL_SIZE)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    redis = Redis.from_url(REDIS_URL)
    FastAPICache.init(RedisBackend(redis), prefix=PREFIX)
    yield
    await redis.aclose()
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/heroes/{hero_id}")
@cache(expire=TTL)
async def read_hero(hero_id: int) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(text(SELECT_HERO), {"id": hero_id})).mappings().first()
    if row is None:
        raise HTTPException(status_code=404, detail="no such hero")
    return dict(row)
