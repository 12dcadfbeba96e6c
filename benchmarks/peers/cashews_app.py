"""FastAPI with cashews' ``@cache`` over Redis with its client-side cache (an in-process
copy kept coherent by Redis invalidation messages): the peer closest to twotier's design.
The row read through SQLAlchemy (async)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cashews import cache
from common import DATABASE_URL, POOL_SIZE, PREFIX, REDIS_URL, SELECT_HERO, TTL
from fastapi import FastAPI, HTTPException
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

engine = create_async_engine(DATABASE_URL, pool_size=POOL_SIZE, max_overflow=POOL_SIZE)
cache.setup(REDIS_URL, client_side=True)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    await cache.init()
    yield
    await cache.close()
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@cache(ttl=TTL, key=PREFIX + ":hero:{hero_id}")
async def hero(hero_id: int) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(text(SELECT_HERO), {"id": hero_id})).mappings().first()
    return dict(row) if row is not None else None


@app.get("/heroes/{hero_id}")
async def read_hero(hero_id: int) -> dict[str, Any]:
    found = await hero(hero_id)
    if found is None:
        raise HTTPException(status_code=404, detail="no such hero")
    return found
