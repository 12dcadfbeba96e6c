"""Faults in a tier degrade, never corrupt. Each test starts servers of its own, on free
ports, and removes them; the shared services are never touched."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import DECLARED, database_url
from tests.own_servers import OwnDynamoDB, OwnMariaDB, OwnRedis
from twotier.bench.target import Target

HERO = {"name": "Ada", "hero": "Captain Ada", "power": "math", "xp": 5, "color": "blue"}
LAMP = {"sku": "A-1", "name": "Lamp", "category": "home", "price": 12.5, "stock": 3}
#: The built-in heroes, and a declared resource with a client-given string key.
SUBJECTS = {"heroes": ("/heroes", HERO, "id"), "products": ("/products", LAMP, "sku")}


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    redis = OwnRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        if redis.process is not None:
            redis.signal(signal.SIGCONT)
        redis.kill()


def counter(client: httpx.Client, name: str) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def environment(tmp_path: Path, cache_url: str) -> dict[str, str]:
    return {
        "TWOTIER_DATABASE_URL": database_url("sqlite", tmp_path),
        "TWOTIER_CACHE_URL": cache_url,
        "TWOTIER_CACHE_TIMEOUT": "0.2",
        "TWOTIER_RESOURCES": str(DECLARED),
    }


@pytest.mark.parametrize("subject", sorted(SUBJECTS))
def test_redis_killed_and_restarted(own_redis: OwnRedis, tmp_path: Path, subject: str) -> None:
    path, row, key = SUBJECTS[subject]
    with (
        Target(env=environment(tmp_path, own_redis.url)) as target,
        httpx.Client(base_url=target.url, headers=target.headers, timeout=10) as client,
    ):
        hero_id = client.post(path, json=row).json()[key]
        assert client.get(f"{path}/{hero_id}").headers["x-cache"] == "HIT"

        own_redis.kill()
        errors_before = counter(client, "twotier_cache_errors_total")
        outcomes = set()
        for number in range(200):
            response = client.get(f"{path}/{hero_id}")
            assert response.status_code == 200
            outcomes.add(response.headers["x-cache"])
            if number == 100:  # a write during the outage: committed, remembered
                changed = client.patch(f"{path}/{hero_id}", json={"name": "Outage"})
                assert changed.status_code == 200
        assert "BYPASS" in outcomes
        # The breaker: a handful of failed cache calls, not one per request.
        assert counter(client, "twotier_cache_errors_total") - errors_before < 20
        assert client.get("/readyz").status_code == 503

        own_redis.start()
        deadline = time.monotonic() + 30
        while client.get(f"{path}/{hero_id}").headers["x-cache"] == "BYPASS":
            assert time.monotonic() < deadline, "the cache was not used again"
            time.sleep(0.2)
        assert client.get(f"{path}/{hero_id}").json()["name"] == "Outage"  # nothing stale
        # Fills are kept again once the writes remembered during the outage are replayed,
        # which may take a few more reads than the first one the cache answered.
        while (answer := client.get(f"{path}/{hero_id}")).headers["x-cache"] != "HIT":
            assert answer.json()["name"] == "Outage"
            assert time.monotonic() < deadline, "fills were not kept again"
            time.sleep(0.05)
        ready_again(client)


@pytest.mark.parametrize("subject", sorted(SUBJECTS))
def test_redis_frozen_then_thawed(own_redis: OwnRedis, tmp_path: Path, subject: str) -> None:
    path, row, key = SUBJECTS[subject]
    with (
        Target(env=environment(tmp_path, own_redis.url)) as target,
        httpx.Client(
            base_url=target.url,
            headers=target.headers,
            timeout=5,  # a hang would raise ReadTimeout
        ) as client,
    ):
        hero_id = client.post(path, json=row).json()[key]
        own_redis.signal(signal.SIGSTOP)
        try:
            for _ in range(100):
                response = client.get(f"{path}/{hero_id}")
                assert response.status_code == 200
            replacement = {k: v for k, v in row.items() if k != "sku"} | {"name": "Frozen"}
            assert client.put(f"{path}/{hero_id}", json=replacement).status_code == 200
        finally:
            own_redis.signal(signal.SIGCONT)
        deadline = time.monotonic() + 30
        while client.get(f"{path}/{hero_id}").headers["x-cache"] == "BYPASS":
            assert time.monotonic() < deadline, "the cache was not used again"
            time.sleep(0.2)
        assert client.get(f"{path}/{hero_id}").json()["name"] == "Frozen"


def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    env = environment(tmp_path, "memory://")
    twotier = str(Path(sys.executable).with_name("twotier"))
    subprocess.run(
        [twotier, "db", "sample", "--rows", "50000"],
        env=os.environ | env,
        capture_output=True,
        check=True,
    )
    target = Target(env=env)
    target.__enter__()
    process = target._process
    assert process is not None
    # Uncached reads of 1,000 xp values: each takes a while, so some are surely in flight.
    slow_read = {"USE_CACHE": "False", "REQUEST": "read", "SQLS": list(range(0, 10_000, 10))}
    finished: list[tuple[float, float, int | str]] = []
    stopped_at = [0.0]

    async def client_loop(client: httpx.AsyncClient) -> None:
        while True:
            started = time.monotonic()
            try:
                response = await client.post("/batch", json=slow_read)
            except httpx.TransportError as error:
                finished.append((started, time.monotonic(), type(error).__name__))
                return
            finished.append((started, time.monotonic(), response.status_code))

    async def load() -> None:
        async with httpx.AsyncClient(
            base_url=target.url, headers=target.headers, timeout=60
        ) as client:
            clients = [asyncio.create_task(client_loop(client)) for _ in range(8)]
            await asyncio.sleep(1.0)
            stopped_at[0] = time.monotonic()
            process.send_signal(signal.SIGTERM)
            await asyncio.gather(*clients)

    try:
        asyncio.run(load())
        assert process.wait(timeout=60) == 0
    finally:
        target.__exit__(None, None, None)
    stop = stopped_at[0]
    before = [outcome for start, _, outcome in finished if start < stop - 0.05]
    assert before
    assert set(before) == {200}  # every request sent before the signal was answered
    assert any(start < stop < end for start, end, _ in finished)  # some were in flight


def ready_again(client: httpx.Client) -> None:
    """/readyz answers from a check at most a second old: ready within two."""
    deadline = time.monotonic() + 2
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "/readyz did not say ready"
        time.sleep(0.1)


def recovered(client: httpx.Client, hero_id: int) -> str:
    """Once the database is back: a write succeeds within 30 s, and /readyz says ready.
    The name that write gave the hero."""
    deadline = time.monotonic() + 30
    while client.patch(f"/heroes/{hero_id}", json={"name": "after"}).status_code != 200:
        assert time.monotonic() < deadline, "the app did not recover"
        time.sleep(0.3)
    ready_again(client)
    return "after"


@pytest.fixture
def own_mariadb(tmp_path: Path) -> Iterator[OwnMariaDB]:
    database = OwnMariaDB(tmp_path)
    database.start()
    try:
        yield database
    finally:
        database.crash()


def test_database_crash_and_recovery(own_mariadb: OwnMariaDB, tmp_path: Path) -> None:
    from twotier.store.sql import SQLStore

    env = {
        "TWOTIER_DATABASE_URL": own_mariadb.url,
        "TWOTIER_CACHE_URL": "memory://",
        "TWOTIER_DATABASE_TIMEOUT": "2",
    }
    acknowledged: dict[int, str] = {}
    with (
        Target(env=env) as target,
        httpx.Client(base_url=target.url, headers=target.headers, timeout=30) as client,
    ):
        ids = [
            client.post("/heroes", json=HERO | {"name": f"n{i}"}).json()["id"] for i in range(10)
        ]
        for number in range(30):  # acknowledged writes, right up to the crash
            hero_id = ids[number % 10]
            name = f"w{number}"
            assert client.patch(f"/heroes/{hero_id}", json={"name": name}).status_code == 200
            acknowledged[hero_id] = name
        for hero_id in ids:
            assert client.get(f"/heroes/{hero_id}").headers["x-cache"] == "HIT"

        own_mariadb.crash()
        for hero_id in ids:  # cached reads are still served
            cached = client.get(f"/heroes/{hero_id}")
            assert (cached.status_code, cached.json()["name"]) == (200, acknowledged[hero_id])
        for response in (
            client.patch(f"/heroes/{ids[0]}", json={"name": "lost"}),
            client.post("/heroes", json=HERO),
            client.get(f"/heroes/{ids[0]}", headers={"Cache-Control": "no-cache"}),
            client.post("/batch", json={"USE_CACHE": "True", "REQUEST": "write", "SQLS": [HERO]}),
        ):
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"]
            detail = response.json().get("detail") or response.json()["body"]["detail"]
            assert "database" in detail
        assert client.get("/readyz").status_code == 503

        own_mariadb.start()  # same datadir: crash recovery
        acknowledged[ids[0]] = recovered(client, ids[0])

    async def stored() -> dict[int, str]:
        store = SQLStore(own_mariadb.url)
        try:
            rows = await store.rows("heroes").get_many(ids)
        finally:
            await store.close()
        return {int(hero_id): record["name"] for hero_id, record in rows.items()}

    assert asyncio.run(stored()) == acknowledged  # nothing acknowledged was lost

    # ... and nothing half-applied: the refused writes left no trace.
    async def count() -> int:
        store = SQLStore(own_mariadb.url)
        try:
            return await store.rows("heroes").count()
        finally:
            await store.close()

    assert asyncio.run(count()) == 10


@pytest.fixture
def own_dynamodb() -> Iterator[OwnDynamoDB]:
    database = OwnDynamoDB()
    database.start()
    try:
        yield database
    finally:
        database.signal(signal.SIGCONT)
        database.kill()


def test_dynamodb_frozen_then_thawed(own_dynamodb: OwnDynamoDB) -> None:
    """DynamoDB stops answering: cached reads go on, writes answer 503 with Retry-After
    once botocore's retries are spent, /readyz says so; thawed, everything works again,
    every acknowledged write is there, and each refused one is wholly there or not at all."""
    from twotier.store.dynamo import DynamoStore

    url = own_dynamodb.url("fault_")
    env = {
        "TWOTIER_DATABASE_URL": url,
        "TWOTIER_CACHE_URL": "memory://",
        "TWOTIER_DATABASE_TIMEOUT": "0.5",
    }
    acknowledged: dict[int, str] = {}
    with (
        Target(env=env) as target,
        httpx.Client(base_url=target.url, headers=target.headers, timeout=60) as client,
    ):
        ids = [client.post("/heroes", json=HERO | {"name": f"n{i}"}).json()["id"] for i in range(5)]
        for number, hero_id in enumerate(ids):
            name = f"w{number}"
            assert client.patch(f"/heroes/{hero_id}", json={"name": name}).status_code == 200
            acknowledged[hero_id] = name
            assert client.get(f"/heroes/{hero_id}").headers["x-cache"] == "HIT"

        own_dynamodb.signal(signal.SIGSTOP)
        for hero_id in ids:  # cached reads are still served
            cached = client.get(f"/heroes/{hero_id}")
            assert (cached.status_code, cached.json()["name"]) == (200, acknowledged[hero_id])
        for response in (
            client.patch(f"/heroes/{ids[0]}", json={"name": "refused"}),
            client.get(f"/heroes/{ids[1]}", headers={"Cache-Control": "no-cache"}),
        ):
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"]
            assert "database unavailable: DynamoDB" in response.json()["detail"]
        assert client.get("/readyz").status_code == 503

        own_dynamodb.signal(signal.SIGCONT)
        acknowledged[ids[1]] = recovered(client, ids[1])

    async def stored() -> dict[int, str]:
        store = DynamoStore(url)
        try:
            rows = await store.rows("heroes").get_many(ids)
        finally:
            await store.close()
        return {int(hero_id): record["name"] for hero_id, record in rows.items()}

    names = asyncio.run(stored())
    # The refused PATCH may have reached DynamoDB before the timeout (its outcome is
    # unknown to the client, as with any database): it is there whole, or not at all.
    assert names.pop(ids[0]) in (acknowledged.pop(ids[0]), "refused")
    assert names == acknowledged  # nothing acknowledged was lost
