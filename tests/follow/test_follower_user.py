"""The follower's own database user, on MariaDB with a ROW binlog and PostgreSQL with
``wal_level=logical`` (servers of the tests' own, which check passwords): made by whatever
makes the schema (``db init``, a server starting) with the replication privileges and the
read of twotier's identity, nothing else. A follower connected as it follows; it can
change nothing and read no row; a new password takes over from the old."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import ValidationError
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError

from tests.conftest import SERVER_URLS, redis_namespace, require
from tests.follow.test_follower import eventually, made_anew
from tests.heroes import hero
from tests.own_servers import OwnMariaDB, OwnPostgres
from twotier.bootstrap import build_service
from twotier.config import Settings
from twotier.follow.follower import Follower
from twotier.follow.sources import change_log_for
from twotier.service import Service
from twotier.store.sql import SQLStore

FOLLOWER = "twotier_follower"
#: A password that quoting done wrong would break (or run).
AWKWARD = "p'a%s:x\"\\y $1; --"


@pytest.fixture(params=["mariadb-binlog", "postgres-logical"])
def admin_url(request: pytest.FixtureRequest) -> str:
    require("redis")
    if request.param.startswith("postgres"):
        postgres: OwnPostgres = request.getfixturevalue("postgres")
        return postgres.url
    mariadb: OwnMariaDB = request.getfixturevalue("binlog_mariadb")
    return mariadb.url


def as_follower(url: str, password: str) -> str:
    follower = make_url(url).set(username=FOLLOWER, password=password)
    return follower.render_as_string(hide_password=False)


def service(url: str, namespace: str, password: str | None = None) -> Service:
    """A service on ``url``; with ``password``, one that makes the follower's user."""
    return build_service(
        Settings(
            database_url=url,
            cache_url=SERVER_URLS["redis"],
            cache_namespace=namespace,
            follower_user=FOLLOWER if password else None,
            follower_password=password,
        )
    )


NAMESPACE = redis_namespace()


@pytest.fixture
async def admin(admin_url: str) -> AsyncIterator[Service]:
    """The schema made anew, and the follower's user with it, by the database's owner."""
    async with made_anew(service(admin_url, NAMESPACE, AWKWARD)) as made:
        yield made


async def test_a_follower_follows_as_its_own_user(admin: Service, admin_url: str) -> None:
    follower = service(as_follower(admin_url, AWKWARD), NAMESPACE)
    await follower.prepare(schema=False)  # reads the identity, changes nothing
    change_log = change_log_for(follower, NAMESPACE)
    await change_log.prepare()  # PostgreSQL: the slot, made by the follower's user
    running = Follower(follower, change_log, lease=2.0)
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    try:

        async def following() -> bool:
            return running.following

        await eventually(following, "the follower's user follows")
        heroes = admin.resource("heroes")
        key = (await heroes.create(hero("Ann", xp=10)))["id"]
        assert b'"Ann"' in ((await heroes.read(key)).body or b"")  # cached
        store = admin.store
        assert isinstance(store, SQLStore)
        async with store.engine.begin() as conn:
            await conn.execute(
                text("UPDATE superheroes SET name = 'Bea' WHERE id = :key"), {"key": key}
            )

        async def fresh() -> bool:
            return b'"Bea"' in ((await heroes.read(key)).body or b"")

        await eventually(fresh, "a plain UPDATE reaches the cache through the follower")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await change_log.close()
        await follower.close()


async def test_the_followers_user_may_do_nothing_else(admin: Service, admin_url: str) -> None:
    follower = SQLStore(as_follower(admin_url, AWKWARD), list(admin.resources.values()))
    try:
        assert await follower.identity() == admin.database_id  # what it may read
        for statement in (
            "SELECT name FROM superheroes",
            "UPDATE superheroes SET name = 'x'",
            "INSERT INTO superheroes (id, name, hero, power, xp, color) "
            "VALUES (1, 'x', 'x', 'x', 1, 'x')",
            "DELETE FROM twotier_meta",
            "SELECT * FROM twotier_api_keys",
            "CREATE TABLE intruder (a INT)",
            "DROP TABLE superheroes",
        ):
            async with follower.engine.connect() as conn:
                with pytest.raises(DBAPIError, match=r"denied|permission|must be owner"):
                    await conn.execute(text(statement))
    finally:
        await follower.close()


async def test_a_new_password_takes_over(admin: Service, admin_url: str) -> None:
    rotated = service(admin_url, NAMESPACE, "rotated-" + AWKWARD)
    try:
        await rotated.prepare()  # the next server to start, with the secret rotated
    finally:
        await rotated.close()
    for password, works in ((AWKWARD, False), ("rotated-" + AWKWARD, True)):
        store = SQLStore(as_follower(admin_url, password), list(admin.resources.values()))
        try:
            if works:
                assert await store.identity() == admin.database_id
            else:
                with pytest.raises(Exception, match=r"denied|authentication"):
                    await store.identity()
        finally:
            await store.close()


@pytest.mark.parametrize(
    ("settings", "refusal"),
    [
        ({"follower_user": FOLLOWER}, "go together"),
        ({"follower_user": "Robert'); DROP", "follower_password": "x"}, "must be 1-32 of"),
        (
            {"follower_user": FOLLOWER, "follower_password": "x", "database_url": "sqlite://"},
            "SQLite has no users",
        ),
        (
            {"follower_secret_arn": "arn:x", "database_url": "dynamodb://?region=us-east-1"},
            "IAM",
        ),
    ],
)
def test_a_follower_user_that_cannot_be_is_refused(settings: dict[str, str], refusal: str) -> None:
    with pytest.raises(ValidationError, match=refusal):
        Settings(**settings)  # type: ignore[arg-type]


async def test_the_followers_user_connects_only_from_its_network(
    binlog_mariadb: OwnMariaDB,
) -> None:
    """MySQL: the follower's user at its host (a network given as 10.0.0.0/16 is MySQL's
    10.0.0.0/255.255.0.0); its account at any other host (the '%' of before) is dropped,
    and from outside that network it cannot connect at all."""
    require("redis")
    url = binlog_mariadb.url
    namespace = redis_namespace()

    def hosts() -> list[str]:
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=binlog_mariadb.port, user="root")
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT Host FROM mysql.user WHERE User = %s", (FOLLOWER,))
                return sorted(row[0] for row in cursor.fetchall())
        finally:
            conn.close()

    async with made_anew(service(url, namespace, AWKWARD)):
        assert hosts() == ["%"]
        for network, allowed in (("10.0.0.0/16", False), ("127.0.0.0/8", True)):
            narrowed = build_service(
                Settings(
                    database_url=url,
                    cache_url=SERVER_URLS["redis"],
                    cache_namespace=namespace,
                    follower_user=FOLLOWER,
                    follower_password=AWKWARD,
                    follower_host=network,
                )
            )
            try:
                await narrowed.prepare()
            finally:
                await narrowed.close()
            address, mask = network.split("/")
            assert hosts() == [f"{address}/{'255.255.0.0' if mask == '16' else '255.0.0.0'}"]
            store = SQLStore(as_follower(url, AWKWARD), [])
            try:
                if allowed:
                    await store.identity()
                else:
                    with pytest.raises(Exception, match=r"not allowed|denied|Host"):
                        await store.identity()
            finally:
                await store.close()
