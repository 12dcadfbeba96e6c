"""One cache namespace, one database at a time: entries are filed under the database's
identity (``Store.identity``, written once by ``db init``), so a database dropped and made
again — or another one behind the same Redis — never answers with the old one's rows."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import SERVER_URLS, redis_namespace, require
from tests.heroes import hero
from twotier.bootstrap import build_service
from twotier.config import Settings
from twotier.policy import Outcome
from twotier.store.sql import async_url


def database_of_its_own(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/own.sqlite3"
    require(kind)
    name = f"twotier_identity_{uuid.uuid4().hex[:8]}"
    return make_url(SERVER_URLS[kind]).set(database=name).render_as_string(hide_password=False)


async def drop_database(url: str) -> None:
    """The whole database, as an operator would drop it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        os.unlink(str(parsed.database))
        return
    server = async_url(url).set(database="postgres" if "postgres" in url else None)
    engine = create_async_engine(server.sqlalchemy(), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            force = " WITH (FORCE)" if "postgres" in url else ""
            await conn.execute(text(f"DROP DATABASE IF EXISTS {parsed.database}{force}"))
    finally:
        await engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "mysql", "postgres"])
async def test_a_database_made_again_serves_none_of_the_old_rows(kind: str, tmp_path: Path) -> None:
    require("redis")
    url = database_of_its_own(kind, tmp_path)
    settings = Settings(
        database_url=url, cache_url=SERVER_URLS["redis"], cache_namespace=redis_namespace()
    )
    before = build_service(settings)
    await before.prepare()
    heroes = before.resource("heroes")
    made = await heroes.create(hero("Ann", xp=7))
    assert (await heroes.read(made["id"])).outcome is Outcome.HIT
    assert b"Ann" in ((await heroes.lookup("xp", [7])).body or b"")
    first = before.database_id
    await before.close()
    await drop_database(url)

    after = build_service(settings)  # the same Redis namespace, a new database
    try:
        await after.prepare()
        assert after.database_id != first
        heroes = after.resource("heroes")
        assert (await heroes.read(made["id"])).body is None  # not the old row: a new key
        assert (await heroes.lookup("xp", [7])).body == b"[]"
        again = await heroes.create(hero("Bob", xp=7))
        assert (await heroes.read(again["id"])).body == again.to_json()
    finally:
        await after.cache.clear()
        await after.close()
        await drop_database(url)
