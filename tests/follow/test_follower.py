"""The change-log follower, on MariaDB's binary log (a mariadbd of the tests' own, logging
rows whole: the shared one logs nothing) with Redis, and on SQLite's change table with the
in-process cache (the embedded default): writes that bypass twotier become visible through
the cache, a restarted follower misses nothing, a lost position empties the cache, and one
follower follows at a time."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pymysql
import pytest
from prometheus_client import generate_latest

from tests.blackhole import BlackHoleProxy
from tests.conftest import SERVER_URLS, cache_url, redis_namespace, require
from tests.heroes import hero
from tests.own_servers import OwnMariaDB, OwnPostgres
from twotier.bootstrap import build_service
from twotier.config import Settings
from twotier.emf import report_every as report_emf
from twotier.errors import FollowRefused
from twotier.follow.follower import POSITION_KEY, Follower
from twotier.follow.pg_logical import slot_name
from twotier.follow.sources import change_log_for
from twotier.policy import Outcome
from twotier.service import Service
from twotier.telemetry import (
    FOLLOW_APPLIED,
    FOLLOW_LAG,
    FOLLOW_RESETS,
    FOLLOW_RETAINED,
    REGISTRY,
    follow_heard,
)

#: Liveness, not speed: how long to wait for what must happen (no test relies on less).
PATIENCE = 30.0


class Database:
    """The followed database, and writes to it that bypass twotier."""

    def __init__(self, kind: str, url: str, port: int = 0, cache: str = "redis") -> None:
        self.kind = kind
        self.url = url
        self.port = port
        self.cache = cache  # the cache kind (tests.conftest.cache_url)
        self.namespace = redis_namespace()

    def sql(self, statement: str, *args: object) -> None:
        """Plain SQL on a connection of its own, committed (``?`` placeholders)."""
        if self.kind == "sqlite":  # someone editing the file with sqlite3
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=30)
            try:
                with conn:
                    conn.execute(statement, args)
            finally:
                conn.close()
        elif self.kind == "postgres":  # psql, as an operator would
            assert all(isinstance(arg, int) for arg in args)  # written in as they are
            command = statement.replace("?", "{}").format(*args)
            subprocess.run(
                [
                    "psql",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "-d",
                    self.url.rsplit("/", 1)[1],  # the URL's database
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-qc",
                    command,
                ],
                check=True,
                capture_output=True,
            )
        else:
            self._query(statement.replace("?", "%s"), *args)

    def lose_position(self) -> None:
        """What the log held after the follower's position is gone."""
        if self.kind == "sqlite":
            self.sql("DELETE FROM twotier_changes")  # as its retention would
        elif self.kind == "postgres":
            self.sql(f"SELECT pg_drop_replication_slot('{slot_name(self.namespace)}')")
        else:
            # The server keeps a log a replica still reads: wait for the stopped
            # follower's dump thread to end, then keep only a new, empty log.
            deadline = time.monotonic() + PATIENCE
            while self._query(
                "SELECT COUNT(*) FROM information_schema.processlist "
                "WHERE command LIKE 'Binlog Dump%'"
            )[0][0]:
                assert time.monotonic() < deadline, "the dump thread did not end"
                time.sleep(0.1)
            self.sql("FLUSH BINARY LOGS")
            # MariaDB keeps a log until InnoDB's checkpoint past its last commit: a moment.
            while len(self._query("SHOW BINARY LOGS")) > 1:
                assert time.monotonic() < deadline, "the old binary logs were not purged"
                self.sql("PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 DAY")
                time.sleep(0.1)

    def drop_slot(self) -> None:
        """PostgreSQL: this namespace's slot, dropped once no stream holds it (a stream
        that just ended may hold it a few seconds): each test's namespace has a slot of its
        own, and the module's server has eight."""
        import psycopg2

        deadline = time.monotonic() + PATIENCE
        with contextlib.closing(
            psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        ) as conn:
            conn.autocommit = True
            while time.monotonic() < deadline:
                with conn.cursor() as cursor:
                    cursor.execute(
                        "SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                        (slot_name(self.namespace),),
                    )
                    found = cursor.fetchone()
                    if found is None:
                        return
                    if not found[0]:
                        cursor.execute(
                            "SELECT pg_drop_replication_slot(%s)", (slot_name(self.namespace),)
                        )
                        return
                time.sleep(0.1)

    def _query(self, statement: str, *args: object) -> list[tuple[object, ...]]:
        mysql = pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user="root",
            database="superhero_db",
            autocommit=True,
        )
        try:
            with mysql.cursor() as cursor:
                cursor.execute(statement, args or None)
                return list(cursor.fetchall())
        finally:
            mysql.close()


@pytest.fixture(
    params=[
        "mariadb-binlog-redis",
        "postgres-logical-redis",
        "postgres-logical-cluster",
        "sqlite-memory",
    ]
)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param.startswith("sqlite"):
        yield Database("sqlite", f"sqlite:///{tmp_path}/followed.sqlite3", cache="memory")
        return
    require("redis")
    if request.param.startswith("postgres"):
        postgres: OwnPostgres = request.getfixturevalue("postgres")
        cache = request.param.rsplit("-", 1)[1]  # the lease and position on a cluster too
        followed = Database("postgres", postgres.url, postgres.port, cache)
        yield followed
        followed.drop_slot()
        return
    mariadb: OwnMariaDB = request.getfixturevalue("binlog_mariadb")
    yield Database("mariadb", mariadb.url, mariadb.port)


@pytest.fixture
async def service(database: Database) -> AsyncIterator[Service]:
    settings = Settings(
        database_url=database.url,
        cache_url="memory://" if database.cache == "memory" else cache_url(database.cache),
        cache_namespace=database.namespace,
    )
    async with made_anew(build_service(settings)) as made:
        yield made


@asynccontextmanager
async def made_anew(made: Service) -> AsyncIterator[Service]:
    """``made`` over its tables made anew, empty; after, its cache namespace emptied, the
    tables dropped and the service closed."""
    await made.prepare()
    await made.store.drop_schema()  # type: ignore[attr-defined]
    await made.prepare()
    try:
        yield made
    finally:
        await made.cache.clear()
        await made.store.drop_schema()  # type: ignore[attr-defined]
        await made.close()


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {PATIENCE} s: {what}")
        await asyncio.sleep(0.05)


class Running:
    """A follower on a task of its own, stopped cleanly by ``stop``."""

    def __init__(self, service: Service, database: Database, lease: float = 2.0) -> None:
        self.follower = Follower(service, change_log_for(service, database.namespace), lease=lease)
        self._stop = asyncio.Event()
        self.task = asyncio.create_task(self.follower.run(self._stop))

    async def following(self) -> None:
        async def check() -> bool:
            return self.follower.following

        await eventually(check, "the follower follows")

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self.task, PATIENCE)


async def read(service: Service, key: int) -> tuple[bytes | None, Outcome]:
    served = await service.resource("heroes").read(key)
    return served.body, served.outcome


async def test_writes_that_bypass_twotier_reach_the_cache(
    service: Service, database: Database
) -> None:
    heroes = service.resource("heroes")
    FOLLOW_RETAINED.set(-1)
    running = Running(service, database)
    await running.following()  # the first follower empties the namespace: then write
    made = await heroes.create(hero("Ann", xp=10))
    key = made["id"]
    try:
        assert (await read(service, key))[1] is Outcome.HIT  # written through
        assert b'"id":' in ((await heroes.lookup("xp", [10])).body or b"")  # cached
        absent = key + 100
        assert (await read(service, absent))[0] is None  # a negative entry, cached

        database.sql("UPDATE superheroes SET name = 'Bea', xp = 11 WHERE id = ?", key)
        database.sql(
            "INSERT INTO superheroes (id, name, hero, power, xp, color) "
            "VALUES (?, 'Cy', 'h', 'p', 12, 'c')",
            absent,
        )

        async def updated() -> bool:
            body, outcome = await read(service, key)
            return outcome is Outcome.HIT and body is not None and b'"Bea"' in body

        async def inserted() -> bool:
            body, _ = await read(service, absent)
            return body is not None and b'"Cy"' in body

        async def moved_out_of_its_old_lookup() -> bool:
            return (await heroes.lookup("xp", [10])).body == b"[]"

        await eventually(updated, "a plain UPDATE replaces the cached row")
        await eventually(inserted, "a plain INSERT replaces the cached absence")
        await eventually(moved_out_of_its_old_lookup, "the old lookup value is invalidated")
        assert b'"Bea"' in ((await heroes.lookup("xp", [11])).body or b"")

        database.sql("DELETE FROM superheroes WHERE id = ?", key)

        async def deleted() -> bool:
            return (await read(service, key))[0] is None

        await eventually(deleted, "a plain DELETE leaves a tombstone")
        if database.kind == "postgres":  # the WAL the slot holds back is reported
            retained = FOLLOW_RETAINED._value.get()
            assert 0 < retained < 64 * 2**20, retained  # caught up: what is not confirmed yet
    finally:
        await running.stop()


async def test_a_restarted_follower_misses_nothing(service: Service, database: Database) -> None:
    heroes = service.resource("heroes")
    first = Running(service, database)
    await first.following()
    made = [await heroes.create(hero(f"h{i}", xp=i)) for i in range(5)]
    await first.stop()
    # While no follower runs: plain writes, and reads that fill the cache with old rows.
    for record in made:
        assert (await read(service, record["id"]))[1] is Outcome.HIT
        database.sql("UPDATE superheroes SET color = 'new' WHERE id = ?", record["id"])
        assert b'"new"' not in ((await read(service, record["id"]))[0] or b"")  # stale
    # What a server starting with --follow (or db init) does first: it must move nothing.
    await change_log_for(service, database.namespace).prepare()
    resets = FOLLOW_RESETS._value.get()
    second = Running(service, database)
    try:

        async def fresh() -> bool:
            bodies = [(await read(service, record["id"]))[0] or b"" for record in made]
            return all(b'"new"' in body for body in bodies)

        await eventually(fresh, "the changes made while no follower ran are applied")
        assert FOLLOW_RESETS._value.get() == resets  # resumed, not emptied
    finally:
        await second.stop()


async def test_a_lost_position_empties_the_cache(service: Service, database: Database) -> None:
    heroes = service.resource("heroes")
    running = Running(service, database)
    await running.following()
    made = await heroes.create(hero("Ann"))
    await running.stop()
    cache = service.cache.inner
    assert (await cache.get(f"{service.database_id}:{POSITION_KEY}")) is not None
    # A change while no follower runs, and then the log that held it is gone.
    database.sql("UPDATE superheroes SET color = 'lost' WHERE id = ?", made["id"])
    database.lose_position()
    assert (await read(service, made["id"]))[1] is Outcome.HIT  # the old row, cached
    resets = FOLLOW_RESETS._value.get()
    again = Running(service, database)
    try:

        async def fresh() -> bool:
            body, _ = await read(service, made["id"])
            return body is not None and b'"lost"' in body

        await eventually(fresh, "the cache emptied: the row read fresh")
        assert FOLLOW_RESETS._value.get() == resets + 1  # the position was lost, not missing
        await again.following()
        position = await cache.get(f"{service.database_id}:{POSITION_KEY}")
        assert position is not None
        assert position.body
    finally:
        await again.stop()


async def test_one_follower_follows_and_another_takes_over(
    service: Service, database: Database
) -> None:
    one, two = Running(service, database, lease=1.0), Running(service, database, lease=1.0)
    try:

        async def exactly_one() -> bool:
            return [one.follower.following, two.follower.following].count(True) == 1

        await eventually(exactly_one, "one of two followers follows")
        await asyncio.sleep(2.5)  # past two leases: still one, the same one
        assert await exactly_one()
        holder, other = (one, two) if one.follower.following else (two, one)
        await holder.stop()
        await other.following()  # within a lease of the holder's end
    finally:
        for running in (one, two):
            if not running.task.done():
                await running.stop()


async def test_a_database_without_a_binlog_is_refused_in_one_line(tmp_path: Path) -> None:
    require("mysql")
    service = build_service(
        Settings(database_url=SERVER_URLS["mysql"], cache_url="memory://")  # binlog off
    )
    try:
        with pytest.raises(FollowRefused, match="log_bin is off"):
            await change_log_for(service, "unused").now()
    finally:
        await service.close()


async def test_the_follower_reports_its_lag_as_emf() -> None:
    """What the CDK stacks' alarm reads: the lag (and the changes) as EMF lines."""
    out = io.StringIO()
    stop = asyncio.Event()
    reporting = asyncio.create_task(report_emf(stop, 0.05, out))
    # The first lines report what this process's earlier tests left in the metrics.
    await asyncio.sleep(0.3)
    out.seek(0)
    out.truncate()
    FOLLOW_LAG.observe(0.25)
    FOLLOW_APPLIED.inc(3)

    async def reported() -> bool:
        return "FollowLag" in out.getvalue()

    await eventually(reported, "an EMF line with the lag")
    stop.set()
    await reporting
    documents = [json.loads(line) for line in out.getvalue().splitlines()]
    lag = next(d for d in documents if "FollowLag" in d)
    assert lag["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "twotier"
    assert lag["FollowLag"] == [250.0]  # milliseconds
    assert next(d["FollowChanges"] for d in documents if "FollowChanges" in d) == 3


async def test_the_holder_reports_how_long_ago_it_heard_the_log() -> None:
    """The heartbeat's age, from the follower that holds the lease (the alarm on it treats
    no data as breaching: no follower holds the lease); none while standing by, including
    after this process held the lease and let it go."""
    out = io.StringIO()
    follow_heard(None)  # standing by: nothing written
    await report_emf_once(out)
    assert "FollowHeartbeatAge" not in out.getvalue()
    heard = time.monotonic() - 2.5
    follow_heard(lambda: heard)  # as a holder sets it
    try:
        await report_emf_once(out)
    finally:
        follow_heard(None)
    ages = [
        json.loads(line)["FollowHeartbeatAge"]
        for line in out.getvalue().splitlines()
        if "FollowHeartbeatAge" in line
    ]
    assert ages
    assert all(2.5 <= age < 60 for age in ages)
    after = io.StringIO()
    await report_emf_once(after)
    assert "FollowHeartbeatAge" not in after.getvalue()
    assert "twotier_follow_heartbeat_age_seconds NaN" in generate_latest(REGISTRY).decode()


async def report_emf_once(out: io.StringIO) -> None:
    stop = asyncio.Event()
    reporting = asyncio.create_task(report_emf(stop, 0.05, out))
    await asyncio.sleep(0.08)
    stop.set()
    await reporting


async def test_a_bulk_load_on_sqlite_records_one_change_and_keeps_recording(
    tmp_path: Path,
) -> None:
    """SQLite's change-recording triggers step aside for a bulk load, which records itself
    as one change of the whole table (the followers empty their caches on it): the change
    table does not grow by a row per loaded row, and later writes are recorded as before."""
    database = Database("sqlite", f"sqlite:///{tmp_path}/load.sqlite3")
    service = build_service(Settings(database_url=database.url, cache_url="memory://"))
    await service.prepare()

    def changes() -> int:
        with sqlite3.connect(database.url.removeprefix("sqlite:///")) as conn:
            return int(conn.execute("SELECT count(*) FROM twotier_changes").fetchone()[0])

    try:
        await service.resource("heroes").create(hero("Ann"))
        assert changes() == 1
        rows = [((i, f"h{i}", "H", "P", i, "C"), str(i)) for i in range(1, 201)]
        assert await service.load("heroes", iter(rows), replace=True, keep=lambda: True) == 200
        assert changes() == 2
        with sqlite3.connect(database.url.removeprefix("sqlite:///")) as conn:
            whole = conn.execute("SELECT tbl, old, new FROM twotier_changes ORDER BY seq DESC")
            assert whole.fetchone() == ("superheroes", None, None)
        database.sql("UPDATE superheroes SET name = 'Bea' WHERE id = 7")
        assert changes() > 1  # recorded (twice: the version trigger's own update too)
    finally:
        await service.close()


async def test_a_follower_on_a_dead_link_hands_over(
    binlog_mariadb: OwnMariaDB, tmp_path: Path
) -> None:
    """The holder's link to the binary log dies half-open (a proxy of the test's own that
    swallows everything, answering nothing): no event, no heartbeat, no error. It gives the
    lease up after five silent seconds and a standby on a sound link takes over from the
    saved position: a write made meanwhile, beside twotier, reaches the cache. Before, the
    holder waited on its socket for ever, renewing its lease, and the write stayed stale."""
    require("redis")
    namespace = redis_namespace()

    def service_at(port: int) -> Service:
        url = f"mysql://root@127.0.0.1:{port}/superhero_db"
        return build_service(
            Settings(database_url=url, cache_url=cache_url("redis"), cache_namespace=namespace)
        )

    database = Database("mariadb", binlog_mariadb.url, binlog_mariadb.port)
    database.namespace = namespace
    with BlackHoleProxy(binlog_mariadb.port) as proxy:
        async with made_anew(service_at(binlog_mariadb.port)) as direct:
            through_proxy = service_at(proxy.port)
            await through_proxy.prepare(schema=False)
            try:
                holder = Running(through_proxy, database, lease=2.0)
                await holder.following()
                standby = Running(direct, database, lease=2.0)
                made = await direct.resource("heroes").create(hero("Ann"))
                assert (await read(direct, made["id"]))[1] is Outcome.HIT
                assert not standby.follower.following

                proxy.swallow()
                database.sql("UPDATE superheroes SET name = 'Bea' WHERE id = ?", made["id"])

                async def fresh() -> bool:
                    body, _ = await read(direct, made["id"])
                    return body is not None and b'"Bea"' in body

                await eventually(fresh, "the standby takes over and applies the write")
                assert standby.follower.following
                assert not holder.follower.following
                await standby.stop()
                holder.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await holder.task
            finally:
                await through_proxy.close()


TYPED = """
[resources.typed]
table = "typed_rows"
[resources.typed.fields]
amount = { type = "decimal", precision = 10, scale = 2 }
day = { type = "date", nullable = true }
at = { type = "local_datetime", nullable = true }
ref = { type = "uuid", nullable = true }
doc = { type = "json", nullable = true }
grade = { type = "string", values = ["G", "PG"], default = "G" }
data = { type = "binary", max_length = 16, nullable = true }
code = { type = "string", max_length = 4, fixed = true, nullable = true }
clock = { type = "time", nullable = true }
"""


async def test_a_plain_write_of_every_type_reaches_the_cache_as_stored(
    database: Database, tmp_path: Path
) -> None:
    """The follower caches a row as its change log tells it, which each database tells in
    its own way (SQLite's JSON images, MariaDB's binary log, PostgreSQL's text): exact
    decimals, dates, local date-times, UUIDs, documents and enumerations come out as a read
    of the row does."""
    declared = tmp_path / "typed.toml"
    declared.write_text(TYPED)
    settings = Settings(
        database_url=database.url,
        cache_url="memory://" if database.cache == "memory" else cache_url(database.cache),
        cache_namespace=database.namespace,
        resources=str(declared),
    )
    async with made_anew(build_service(settings)) as service:
        typed = service.resource("typed")
        running = Running(service, database)
        await running.following()
        made = await typed.create(
            {"amount": Decimal("0.10"), "day": None, "at": None, "ref": None, "doc": None}
            | {"grade": "G", "data": None, "code": None, "clock": None}
        )
        key = made["id"]
        try:
            update = (
                "UPDATE typed_rows SET amount = 12.34, day = '2026-12-07', "
                "at = '2026-12-07 10:11:12.5', ref = '0b8e9ad6-4d4b-4a43-9c4b-4c9e7f7d2a10', "
                """doc = '{"a": [1, 2.5, "x"], "b": null}', grade = 'PG', code = 'ab', """
                + ("clock = '10:11:12.500000', " if database.kind == "sqlite" else "")
                + ("clock = '10:11:12.5', " if database.kind != "sqlite" else "")
                + ("data = decode('00ff10', 'hex')" if database.kind == "postgres" else "")
                + ("data = X'00ff10'" if database.kind != "postgres" else "")
                + " WHERE id = ?"
            )
            if database.kind == "postgres":  # its statement is formatted (braces doubled)
                update = update.replace("{", "{{").replace("}", "}}")
            database.sql(update, key)
            expected = {
                "id": key,
                "amount": "12.34",
                "day": "2026-12-07",
                "at": "2026-12-07T10:11:12.500000",
                "ref": "0b8e9ad6-4d4b-4a43-9c4b-4c9e7f7d2a10",
                "doc": {"a": [1, 2.5, "x"], "b": None},
                "grade": "PG",
                "data": "AP8Q",  # 00 ff 10, in base64
                "code": "ab",  # a CHAR(4), without the spaces PostgreSQL pads it with
                "clock": "10:11:12.500000",  # MySQL's binary log: a duration
            }

            async def cached() -> bool:
                served = await typed.read(key)
                return (
                    served.outcome is Outcome.HIT and json.loads(served.body or b"{}") == expected
                )

            await eventually(cached, "the plain UPDATE is cached as the row reads")
            stored = await service.store.rows("typed").get(key)
            assert stored is not None
            assert json.loads(stored.to_json()) == expected  # and as the database has it
        finally:
            await running.stop()


JOINED = """
[resources.plays]
table = "follow_plays"
key = ["playlist_id", "track_id"]
lookups = ["track_id"]
[resources.plays.fields]
playlist_id = { type = "integer", minimum = 1 }
track_id = { type = "integer", minimum = 1 }
place = { type = "integer", nullable = true }
"""


async def test_plain_writes_of_a_join_table_reach_the_cache(
    database: Database, tmp_path: Path
) -> None:
    """A row keyed by two columns, changed and deleted by plain SQL: the follower names it
    by both, and the lookup on the second part moves with it."""
    declared = tmp_path / "joined.toml"
    declared.write_text(JOINED)
    settings = Settings(
        database_url=database.url,
        cache_url="memory://" if database.cache == "memory" else cache_url(database.cache),
        cache_namespace=database.namespace,
        resources=str(declared),
    )
    async with made_anew(build_service(settings)) as service:
        plays = service.resource("plays")
        running = Running(service, database)
        await running.following()
        try:
            await plays.create({"playlist_id": 3, "track_id": 7, "place": 1})
            await plays.create({"playlist_id": 4, "track_id": 7, "place": 2})
            assert (await plays.read("3,7")).outcome is Outcome.HIT
            assert len(json.loads((await plays.lookup("track_id", [7])).body or b"[]")) == 2
            database.sql("UPDATE follow_plays SET place = 9 WHERE playlist_id = 3 AND track_id = 7")
            database.sql("DELETE FROM follow_plays WHERE playlist_id = 4 AND track_id = 7")

            async def applied() -> bool:
                served = await plays.read("3,7")
                gone = await plays.read("4,7")
                return (
                    served.outcome is Outcome.HIT
                    and json.loads(served.body or b"{}")["place"] == 9
                    and gone.body is None
                )

            await eventually(applied, "the plain UPDATE and DELETE reach the cache")
            by_track = json.loads((await plays.lookup("track_id", [7])).body or b"[]")
            assert [row["playlist_id"] for row in by_track] == [3]
        finally:
            await running.stop()


async def test_a_follower_restarted_after_unfollowed_writes_resumes(
    service: Service, database: Database
) -> None:
    """WAL that carries nothing followed (another table's writes) moves the slot on while
    the follower is caught up: psycopg2 confirms the keepalives' WAL end by itself. The
    position the follower saves moves with it, so a restart resumes instead of emptying
    the cache as if its position were lost."""
    if database.kind != "postgres":
        pytest.skip("PostgreSQL's slot only")
    heroes = service.resource("heroes")
    first = Running(service, database)
    await first.following()
    made = await heroes.create(hero("Quiet", xp=1))
    database.sql("CREATE TABLE IF NOT EXISTS unfollowed (n integer)")
    for _ in range(5):
        database.sql("INSERT INTO unfollowed SELECT generate_series(1, 1000)")
    await asyncio.sleep(3)  # keepalives, and the feedback psycopg2 sends on them
    await first.stop()
    resets = FOLLOW_RESETS._value.get()
    second = Running(service, database)
    try:
        await second.following()
        database.sql("UPDATE superheroes SET name = 'Loud' WHERE id = ?", made["id"])

        async def updated() -> bool:
            return b'"Loud"' in ((await read(service, made["id"]))[0] or b"")

        await eventually(updated, "the resumed follower applies the next change")
        assert FOLLOW_RESETS._value.get() == resets  # resumed, not emptied
    finally:
        await second.stop()
        database.sql("DROP TABLE IF EXISTS unfollowed")


async def test_a_chosen_schemas_plain_writes_reach_the_cache(postgres: OwnPostgres) -> None:
    """The URL's options choose schema ``sales``: the follower's replication connection
    takes them too, so the publication and the slot follow its tables."""
    require("redis")
    # A database of its own: a publication is the database's, and this one's names the
    # schema's tables (the module's other tests follow superhero_db's).
    own = postgres.url.replace("/superhero_db", "/schema_db")
    database = Database("postgres", own, postgres.port, "redis")
    plain = build_service(Settings(database_url=own, cache_url="memory://"))
    await plain.prepare()  # the database, made as twotier makes it
    await plain.close()
    database.sql("CREATE SCHEMA IF NOT EXISTS sales")
    url = own + "?options=-csearch_path%3Dsales"
    settings = Settings(
        database_url=url, cache_url=cache_url("redis"), cache_namespace=database.namespace
    )
    try:
        async with made_anew(build_service(settings)) as service:
            heroes = service.resource("heroes")
            running = Running(service, database)
            await running.following()
            try:
                made = await heroes.create(hero("Ann", xp=5))
                assert (await read(service, made["id"]))[1] is Outcome.HIT
                database.sql("UPDATE sales.superheroes SET name = 'Bea' WHERE id = ?", made["id"])

                async def fresh() -> bool:
                    body, _ = await read(service, made["id"])
                    return body is not None and b'"Bea"' in body

                await eventually(fresh, "the plain UPDATE in schema sales reaches the cache")
            finally:
                await running.stop()
    finally:
        database.drop_slot()
        database.sql("DROP SCHEMA IF EXISTS sales CASCADE")
