"""The checker with writers beside the API: plain-SQL updates mixed into its load, on
MariaDB with a ROW binlog (a server of the test's own) and Redis, served by two workers
that follow the binlog. With the follower, no read is older than its bound allows; without
it (the control), the checker finds the stale reads a cache keeps for its TTL. Then the
same with the servers SIGKILLed under the clients, writes in flight, and a follower of its
own beside them."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import os
import random
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import text

from tests.conftest import SERVER_URLS, emptied, redis_namespace, require
from tests.consistency.checker import HEROES, History, Key, Outsider, Workload, Write, freeze, run
from tests.consistency.test_consistency import (
    CLIENTS,
    OPERATIONS,
    RESOURCES,
    cache_disagreements,
    database_rows,
    judge,
    queried_declaration,
    rows_of,
)
from tests.follow.test_follow_commands import eventually, followed
from tests.own_servers import OwnMariaDB
from tests.test_cli_and_server import TWOTIER
from twotier.access.keys import Role, create_key
from twotier.bench.target import Target, free_port
from twotier.cache.redis import RedisCache
from twotier.store.sql import SQLStore

#: How long after its commit a write made beside the API may still be missing from what the
#: API answers: the follower's lag (milliseconds when it keeps up), with room for a loaded
#: machine. Not a speed: a correctness bound, the one docs/guarantees.md states.
FOLLOW_BOUND = 3.0
#: The control (no follower) is judged against a tighter bound: the API's own writes of the
#: same hot rows mend a stale entry within seconds, and on a fast machine within the
#: follower's bound, so the control would find nothing to show.
CONTROL_BOUND = 0.2


def plain_sql_writer(store: SQLStore, bound: float) -> Outsider:
    """Updates of hot heroes by plain SQL, as another service would make them: each in a
    transaction that reads back the row and the version the database's trigger gave it."""

    async def write(history: History, keys: list[Key], done: asyncio.Event) -> None:
        rng = random.Random(7)
        marker = 10**8
        while not done.is_set():
            await asyncio.sleep(0.005)
            key, marker = rng.choice(keys), marker + 1
            start = time.monotonic()
            async with store.engine.begin() as conn:
                changed = await conn.execute(
                    text("UPDATE superheroes SET name = :name, xp = :xp WHERE id = :key"),
                    {"name": f"o{marker}", "xp": rng.choice(HEROES.values), "key": key},
                )
                if not changed.rowcount:  # deleted meanwhile
                    continue
                found = (
                    await conn.execute(
                        text(
                            "SELECT id, name, hero, power, xp, color, version "
                            "FROM superheroes WHERE id = :key"
                        ),
                        {"key": key},
                    )
                ).one()
            end = time.monotonic() + bound
            row = dict(found._mapping)
            version = row.pop("version")
            history.writes[key].append(Write(key, start, end, freeze(row), version))

    return write


@asynccontextmanager
async def followed_database(
    mariadb: OwnMariaDB, directory: Path
) -> AsyncIterator[tuple[SQLStore, dict[str, str]]]:
    """The checker's tables, empty, in the binlogged MariaDB; the servers' environment
    (a fresh Redis namespace, the usual 300 s TTL, no near-cache, the resources declaring
    what the checker's queries need)."""
    require("redis")
    async with emptied(SQLStore(mariadb.url, list(RESOURCES.values()))) as store:
        yield (
            store,
            {
                "TWOTIER_DATABASE_URL": mariadb.url,
                "TWOTIER_CACHE_URL": SERVER_URLS["redis"],
                "TWOTIER_CACHE_NAMESPACE": redis_namespace(),
                "TWOTIER_NEAR_CACHE_TTL": "0",
                "TWOTIER_RESOURCES": str(queried_declaration(directory)),
            },
        )


async def problems_once_settled(
    history: History, store: SQLStore, env: dict[str, str], *, servers_killed: bool = False
) -> list[str]:
    """The history judged, and the cache compared with the database, once the follower has
    had its bound to take the last changes."""
    await asyncio.sleep(FOLLOW_BOUND)
    rows = rows_of(store, HEROES)
    truth = await database_rows(rows, list(history.writes))
    cache = RedisCache(SERVER_URLS["redis"], namespace=env["TWOTIER_CACHE_NAMESPACE"])
    try:
        return judge(history, truth, servers_killed=servers_killed) + await cache_disagreements(
            cache, store, rows, HEROES, truth
        )
    finally:
        await cache.close()


def written_beside(history: History) -> int:
    return sum(
        write.value is not None and dict(write.value)["name"].startswith("o")
        for writes in history.writes.values()
        for write in writes
    )


@pytest.mark.parametrize("follow", ["on", "off"], ids=["followed", "control-unfollowed"])
async def test_writes_beside_the_api_are_seen_within_the_followers_bound(
    binlog_mariadb: OwnMariaDB, follow: str, tmp_path: Path
) -> None:
    """Plain-SQL updates mixed into the checker's load, on MariaDB with a ROW binlog and two
    workers that follow it (``TWOTIER_FOLLOW=on``), with the usual TTL (300 s): without
    the follower, a cached row stays stale for minutes. No read may be older than the
    newest write acknowledged (for a plain-SQL one: committed ``FOLLOW_BOUND`` seconds)
    before it started, and once everything stops, the cache says what the database says."""
    async with followed_database(binlog_mariadb, tmp_path) as (store, env):
        with Target(workers=2, env=env | {"TWOTIER_FOLLOW": follow}) as target:
            async with httpx.AsyncClient(
                base_url=target.url, headers=target.headers, timeout=30
            ) as client:
                await asyncio.sleep(1)  # the followers start (one takes the lease)
                workload = Workload(clients=CLIENTS, operations=OPERATIONS, queries=True)
                bound = FOLLOW_BOUND if follow == "on" else CONTROL_BOUND
                history = await run(client, workload, HEROES, plain_sql_writer(store, bound))
            problems = await problems_once_settled(history, store, env)
    assert written_beside(history) > 20  # plain SQL did write, all along
    if follow == "on":
        assert not problems, "\n".join(problems[:20])
    else:  # the checker sees what a cache without the follower serves
        assert any("acknowledged" in problem for problem in problems)


class App:
    """One ``twotier serve`` on a port of its own, in a session of its own, so that a
    SIGKILL takes its workers with it and a new one can take the port."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self._env = env
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            *[TWOTIER, "serve", "--port", str(self.port), "--log-level", "warning"],
            env=self._env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        async with httpx.AsyncClient(timeout=1) as probe:
            for _ in range(600):
                try:
                    if (await probe.get(f"http://127.0.0.1:{self.port}/healthz")).is_success:
                        return
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        raise AssertionError(f"the server on port {self.port} did not start")

    async def kill(self) -> None:
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it died on its own
                os.killpg(self._process.pid, signal.SIGKILL)
            await self._process.wait()


class Balancer(httpx.AsyncBaseTransport):
    """A load balancer's part: each request to one of the servers at random; a server that
    refuses the connection (killed, not back yet) is passed over for another. A request
    already sent is never sent again: its connection breaking is the client's to see."""

    def __init__(self, apps: list[App]) -> None:
        self._ports = [app.port for app in apps]
        self._rng = random.Random(5)
        self._inner = httpx.AsyncHTTPTransport()
        #: per port, the writes sent and not yet answered (for a killer to aim at)
        self.writing: collections.Counter[int] = collections.Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        *others, last = self._rng.sample(self._ports, len(self._ports))
        for port in others:
            try:
                return await self._send(request, port)
            except httpx.ConnectError:
                continue
        return await self._send(request, last)

    async def _send(self, request: httpx.Request, port: int) -> httpx.Response:
        request.url = request.url.copy_with(port=port)
        write = request.method != "GET"
        self.writing[port] += write
        try:
            response = await self._inner.handle_async_request(request)
            await response.aread()  # answered only once the body is in
            return response
        finally:
            self.writing[port] -= write

    async def aclose(self) -> None:
        await self._inner.aclose()


def killing(apps: list[App], balancer: Balancer, kills: list[int]) -> Outsider:
    """Every second or so, one of the servers SIGKILLed under its clients (requests in
    flight, writes committed or not, write-throughs not made) and started again. The
    killer aims at a server with a write in flight: the reads, slower, would otherwise
    be most of what a kill cuts off (one run in nine cut no write at all)."""

    async def kill(history: History, keys: list[Key], done: asyncio.Event) -> None:
        rng = random.Random(11)
        while not done.is_set():
            await asyncio.sleep(rng.uniform(0.6, 1.2))
            app = rng.choice(apps)
            for _ in range(500):  # half a second at most, then whichever
                writing = [app for app in apps if balancer.writing[app.port]]
                if writing:
                    app = rng.choice(writing)
                    break
                await asyncio.sleep(0.001)
            await app.kill()
            kills.append(app.port)
            await app.start()

    return kill


def together(*outsiders: Outsider) -> Outsider:
    async def all_of(history: History, keys: list[Key], done: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as group:  # one failing stops the others
            for outsider in outsiders:
                group.create_task(outsider(history, keys, done))

    return all_of


async def test_servers_killed_mid_write_leave_nothing_stale(
    binlog_mariadb: OwnMariaDB, tmp_path: Path
) -> None:
    """The checker's load with plain-SQL updates beside it, over two servers that are
    SIGKILLed and restarted, one at a time, all along: a write cut off may or may not have
    committed (and its write-through, if it did, was never made). A ``twotier follow`` of
    its own, as the AWS stacks run it, follows the binlog. No read is older than the
    bound allows, no acknowledged write is lost, and once writes stop the cache says what
    the database says, the cut-off writes that committed included."""
    async with followed_database(binlog_mariadb, tmp_path) as (store, env):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTIER_")} | env
        follower = await asyncio.create_subprocess_exec(
            TWOTIER, "follow", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        apps = [App(env | {"TWOTIER_FOLLOW": "off"}) for _ in range(2)]
        try:
            with redis.Redis.from_url(SERVER_URLS["redis"]) as shared:
                eventually(lambda: followed(shared, env), "the follower follows")
            key = (await create_key(store, "checker", Role.WRITE))[1]
            await asyncio.gather(*(app.start() for app in apps))
            kills: list[int] = []
            balancer = Balancer(apps)
            async with httpx.AsyncClient(
                transport=balancer,
                base_url=f"http://127.0.0.1:{apps[0].port}",
                headers={"X-API-Key": key},
                timeout=30,
            ) as client:
                workload = Workload(clients=CLIENTS, operations=OPERATIONS, queries=True)
                outsiders = together(
                    plain_sql_writer(store, FOLLOW_BOUND), killing(apps, balancer, kills)
                )
                history = await run(client, workload, HEROES, outsiders)
            problems = await problems_once_settled(history, store, env, servers_killed=True)
        finally:
            for app in apps:
                await app.kill()
            follower.kill()
            await follower.wait()
    assert len(kills) >= 3
    cut_writes = [w for ws in history.writes.values() for w in ws if w.end == math.inf]
    assert cut_writes, f"no write was in flight when a server died: {history.cut_off}"
    assert written_beside(history) > 20
    assert not problems, "\n".join(problems[:20])
