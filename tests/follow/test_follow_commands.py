"""The follower as users run it: inside the embedded server (``make run``: SQLite, the
in-process cache, followed by default), and as ``twotier follow`` beside a server."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pymysql
import redis
from sqlalchemy import text

from tests.conftest import SERVER_URLS, drop_table, redis_namespace, require, settings_for
from tests.follow.test_follower import PATIENCE
from tests.own_servers import OwnMariaDB, OwnPostgres, OwnRedis
from tests.test_cli_and_server import TWOTIER, environment, run, start_server
from twotier.bootstrap import build_service
from twotier.config import Settings
from twotier.follow.follower import POSITION_KEY
from twotier.follow.pg_logical import slot_name
from twotier.store.sql import SQLStore


def eventually(check: object, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {PATIENCE} s: {what}"
        time.sleep(0.05)


def followed(shared: redis.Redis, env: dict[str, str]) -> bool:
    """Has a follower saved a position in the namespace (under the database's identity)?"""
    return bool(shared.keys(f"{env['TWOTIER_CACHE_NAMESPACE']}:*:{POSITION_KEY}"))


def test_the_embedded_server_serves_what_sqlite3_changed(tmp_path: Path) -> None:
    env = environment(settings_for("sqlite", "memory", tmp_path))
    assert run(["db", "init"], env, tmp_path).returncode == 0
    assert run(["db", "sample", "--rows", "5"], env, tmp_path).returncode == 0
    process, url = start_server([], env, tmp_path)
    try:
        httpx.get(f"{url}/heroes/1")
        cached = httpx.get(f"{url}/heroes/1")
        assert cached.headers["x-cache"] == "HIT"
        # Someone edits the file with sqlite3 (or any other program) while it serves.
        path = env["TWOTIER_DATABASE_URL"].removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE superheroes SET name = 'Edited' WHERE id = 1")
        conn.close()
        eventually(
            lambda: httpx.get(f"{url}/heroes/1").json()["name"] == "Edited",
            "the server answers the edited row",
        )
        assert httpx.get(f"{url}/heroes/1").headers["x-cache"] == "HIT"  # cached again
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "following sqlite change table" in output, output


def test_twotier_follow_beside_a_server(tmp_path: Path) -> None:
    require("redis")
    mariadb = OwnMariaDB(tmp_path / "db", binlog=True)
    mariadb.start()
    env = environment(settings_for("sqlite", "memory", tmp_path))
    env.update(
        TWOTIER_DATABASE_URL=mariadb.url,
        TWOTIER_CACHE_URL=SERVER_URLS["redis"],
        TWOTIER_CACHE_NAMESPACE=redis_namespace(),
    )
    follower = None
    try:
        assert run(["db", "init"], env, tmp_path).returncode == 0
        follower = subprocess.Popen(
            [TWOTIER, "follow", "--lease", "2"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        # The key before the server: a server that loaded its keys less than a second ago
        # does not reload them for an unknown one (access.keyring), and would answer 401.
        key = run(["keys", "create", "--role", "write"], env, tmp_path).stdout.strip()
        process, url = start_server([], env, tmp_path)
        try:
            hero = {"name": "Ann", "hero": "h", "power": "p", "xp": 1, "color": "c"}
            # Written once the follower follows (its first start empties the namespace).
            shared = redis.Redis.from_url(env["TWOTIER_CACHE_URL"])
            eventually(lambda: followed(shared, env), "the follower follows")
            shared.close()
            made = httpx.post(f"{url}/heroes", json=hero, headers={"X-API-Key": key}).json()
            assert httpx.get(f"{url}/heroes/{made['id']}").headers["x-cache"] == "HIT"
            conn = pymysql.connect(
                host="127.0.0.1", port=mariadb.port, user="root", database="superhero_db"
            )
            with conn.cursor() as cursor:
                cursor.execute("UPDATE superheroes SET xp = 99 WHERE id = %s", (made["id"],))
            conn.commit()
            conn.close()
            eventually(
                lambda: httpx.get(f"{url}/heroes/{made['id']}").json()["xp"] == 99,
                "the server answers the row changed by plain SQL",
            )
        finally:
            process.terminate()
            process.communicate(timeout=30)
        follower.send_signal(signal.SIGTERM)
        output, _ = follower.communicate(timeout=30)
        assert follower.returncode == 0, output
        assert "following mysql binlog" in output, output
    finally:
        if follower is not None and follower.poll() is None:
            follower.kill()
        mariadb.crash()


def test_twotier_follow_refuses_a_database_without_a_binlog_in_one_line(tmp_path: Path) -> None:
    require("mysql")
    env = environment(settings_for("mysql", "memory", tmp_path))
    try:
        assert run(["db", "init"], env, tmp_path).returncode == 0  # a follower makes no schema
        refused = run(["follow"], env, tmp_path)
    finally:
        drop_table(env["TWOTIER_DATABASE_URL"])
    assert refused.returncode == 2, refused.stderr
    assert "log_bin is off" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def kill_server(process: subprocess.Popen[Any]) -> None:
    """SIGKILL a server and its worker processes (granian's workers are its children)."""
    subprocess.run(["pkill", "-KILL", "-P", str(process.pid)], check=False)
    process.kill()
    process.communicate(timeout=30)


def test_a_write_whose_write_through_died_with_its_server_is_mended(tmp_path: Path) -> None:
    """The issue's crash: Redis frozen, a PUT commits (its write-through fails and is
    remembered in the server's memory), the server is killed, Redis thaws, a new server
    starts. Without a follower it serves the old row until the TTL; a follower started
    beside it resumes from the dead one's saved position and reads the PUT from the binlog."""
    mariadb = OwnMariaDB(tmp_path / "db", binlog=True)
    mariadb.start()
    cache = OwnRedis(tmp_path)
    cache.start()
    env = environment(settings_for("sqlite", "memory", tmp_path))
    env.update(
        TWOTIER_DATABASE_URL=mariadb.url,
        TWOTIER_CACHE_URL=cache.url,
        TWOTIER_CACHE_TIMEOUT="0.3",
        TWOTIER_NEAR_CACHE_TTL="0",
    )
    servers: list[subprocess.Popen[Any]] = []
    try:
        assert run(["db", "init"], env, tmp_path).returncode == 0
        key = run(["keys", "create", "--role", "write"], env, tmp_path).stdout.strip()
        first, url = start_server(["--follow"], env, tmp_path)
        servers.append(first)
        shared = redis.Redis.from_url(cache.url)
        eventually(lambda: followed(shared, env), "the follower follows")
        hero = {"name": "Ann", "hero": "h", "power": "p", "xp": 1, "color": "c"}
        made = httpx.post(f"{url}/heroes", json=hero, headers={"X-API-Key": key}).json()
        assert httpx.get(f"{url}/heroes/{made['id']}").headers["x-cache"] == "HIT"

        cache.signal(signal.SIGSTOP)
        # Reads that time out open the breaker (3 failures): the PUT's write-through is then
        # not even sent, only remembered (a write sent before the freeze would still run
        # when Redis thaws).
        for _ in range(3):
            assert httpx.get(f"{url}/heroes/{made['id']}", timeout=30).status_code == 200
        changed = httpx.put(
            f"{url}/heroes/{made['id']}",
            json=hero | {"name": "Bea"},
            headers={"X-API-Key": key},
            timeout=30,
        )
        assert changed.status_code == 200, changed.text  # committed; the cache missed it
        kill_server(first)  # SIGKILL: what it remembered dies with it
        cache.signal(signal.SIGCONT)

        # A new server without a follower: the old row, from the cache, until the TTL.
        second, url = start_server(["--no-follow"], env, tmp_path)
        servers.append(second)
        stale = httpx.get(f"{url}/heroes/{made['id']}")
        assert (stale.headers["x-cache"], stale.json()["name"]) == ("HIT", "Ann")
        # A follower beside it resumes from the dead one's position: the PUT is in the log.
        servers.append(
            subprocess.Popen([TWOTIER, "follow"], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL)
        )
        eventually(
            lambda: httpx.get(f"{url}/heroes/{made['id']}").json()["name"] == "Bea",
            "the server answers the committed PUT",
        )
        shared.close()
    finally:
        for server in servers:
            if server.poll() is None:
                kill_server(server)
        cache.signal(signal.SIGCONT)
        cache.kill()
        mariadb.crash()


def test_db_init_makes_the_slot_when_following_is_on(tmp_path: Path) -> None:
    postgres = OwnPostgres()
    postgres.start()
    try:
        env = environment(settings_for("sqlite", "memory", tmp_path))
        env.update(TWOTIER_DATABASE_URL=postgres.url, TWOTIER_FOLLOW="on")
        made = run(["db", "init"], env, tmp_path)
        assert made.returncode == 0, made.stderr
        slot = slot_name(env["TWOTIER_CACHE_NAMESPACE"])
        found = subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(postgres.port),
                "-U",
                "postgres",
                "-d",
                "superhero_db",
                "-Atc",
                f"SELECT plugin FROM pg_replication_slots WHERE slot_name = '{slot}';"
                "SELECT string_agg(tablename, ',') FROM pg_publication_tables "
                "WHERE pubname = 'twotier'",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert found.stdout.split() == ["pgoutput", "superheroes"]
        assert run(["db", "init"], env, tmp_path).returncode == 0  # again: nothing moves
    finally:
        postgres.remove()


async def test_a_follower_killed_mid_load_misses_nothing(binlog_mariadb: OwnMariaDB) -> None:
    """Plain-SQL updates and cache fills all along; the following ``twotier follow`` is
    SIGKILLed mid-load (no last save) and another started: once the writes stop, every row
    the cache holds is the database's."""
    require("redis")
    namespace = redis_namespace()
    settings = Settings(
        database_url=binlog_mariadb.url, cache_url=SERVER_URLS["redis"], cache_namespace=namespace
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTIER_")} | {
        "TWOTIER_DATABASE_URL": settings.database_url,
        "TWOTIER_CACHE_URL": settings.cache_url,
        "TWOTIER_CACHE_NAMESPACE": namespace,
    }
    service = build_service(settings)
    await service.prepare()
    heroes = service.resource("heroes")

    def follower() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [TWOTIER, "follow", "--lease", "1"], env=env, stdout=subprocess.DEVNULL
        )

    first = follower()
    second: subprocess.Popen[bytes] | None = None
    try:
        shared = redis.Redis.from_url(settings.cache_url)
        eventually(lambda: followed(shared, env), "the first follower follows")
        shared.close()
        made = await heroes.create_many(
            [{"name": f"h{i}", "hero": "H", "power": "P", "xp": i, "color": "C"} for i in range(40)]
        )
        keys = [record["id"] for record in made]
        store = service.store
        assert isinstance(store, SQLStore)
        rng = random.Random(3)
        deadline = time.monotonic() + 6
        killed_at, restarted_at = time.monotonic() + 2, time.monotonic() + 3
        while time.monotonic() < deadline:
            key = rng.choice(keys)
            async with store.engine.begin() as conn:
                await conn.execute(
                    text("UPDATE superheroes SET xp = xp + 1, name = :name WHERE id = :key"),
                    {"name": f"n{rng.randrange(10**6)}", "key": key},
                )
            await heroes.read(rng.choice(keys))  # fills, racing the follower
            if first.poll() is None and time.monotonic() > killed_at:
                first.kill()  # SIGKILL: no last save of its position
                first.wait(timeout=30)
            if second is None and time.monotonic() > restarted_at:
                second = follower()
            await asyncio.sleep(0.005)

        async def fresh() -> bool:
            for key in keys:
                cached = await heroes.read(key)
                truth = await heroes.read(key, use_cache=False)
                if cached.body != truth.body:
                    return False
            return True

        deadline = time.monotonic() + PATIENCE
        while not await fresh():
            assert time.monotonic() < deadline, "the cache kept rows the database changed"
            await asyncio.sleep(0.1)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        await service.cache.clear()
        await service.store.drop_schema()  # type: ignore[attr-defined]
        await service.close()
