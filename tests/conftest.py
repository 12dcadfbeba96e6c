"""Fixtures over the real services: MariaDB, PostgreSQL and Redis on this machine.

Each test gets its own database table (in a database made for this test run) and its own
Redis namespace, so tests never see each other's data and never touch anything else.
With TWOTIER_TEST_REQUIRE_SERVICES=1 (CI), a service that is down fails the test;
otherwise the test is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import make_url

from twotier.bootstrap import build_store
from twotier.cache.base import Cache
from twotier.cache.memory import MemoryCache
from twotier.config import Settings
from twotier.resources import Resource
from twotier.store.base import Store
from twotier.store.sql import SQLStore

REQUIRE_SERVICES = os.environ.get("TWOTIER_TEST_REQUIRE_SERVICES") == "1"
SERVER_URLS = {
    "mysql": os.environ.get("TWOTIER_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/"),
    "postgres": os.environ.get(
        "TWOTIER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/"
    ),
    "redis": os.environ.get("TWOTIER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
}
RUN_ID = uuid.uuid4().hex[:8]
SQL_STORES = ["sqlite", "mysql", "postgres"]
STORES = [*SQL_STORES, "dynamodb", "dynalite"]
CACHES = ["memory", "redis", "near", "cluster", "near-cluster"]


#: The words in a test's id, fixtures or code that say it needs a service: its marker, so
#: that ``pytest -m 'not mysql'`` leaves out what needs MariaDB.
_NEEDS = {
    "mysql": ("mysql", "mariadb", "binlog"),
    "postgres": ("postgres", "pg_logical"),
    "redis": ("redis", "cluster", "near"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the services it needs, from its id (the tiers it is run on),
    its fixtures, and its code (a ``require`` or a URL of the service's). Marking a test
    that turns out not to need one only leaves it out of a run without that service."""
    sources: dict[Any, str] = {}
    for item in items:
        function = getattr(item, "function", None)
        if function not in sources:
            try:
                sources[function] = inspect.getsource(function).lower() if function else ""
            except (OSError, TypeError):
                sources[function] = ""
        fixtures = getattr(item, "fixturenames", ())
        said = " ".join([item.nodeid.lower(), *fixtures, sources[function]])
        for marker, words in _NEEDS.items():
            if any(word in said for word in words):
                item.add_marker(getattr(pytest.mark, marker))


def require(service: str) -> None:
    """Skip (or, when services are required, fail) unless ``service`` accepts connections."""
    parts = urlsplit(SERVER_URLS[service])
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 2):
            return
    except OSError as error:
        message = f"{service} is not reachable at {parts.hostname}:{parts.port}: {error}"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)


_dynamodbs: dict[str, Any] = {}
_clusters: list[Any] = []


def redis_cluster_url() -> str:
    """The URL of this test run's Redis Cluster (3 primaries, a replica each: processes of
    its own on free ports), started on first use and stopped when the run ends. Tests that
    kill or reshard nodes start a cluster of their own (``tests.own_servers``)."""
    if not _clusters:
        import tempfile

        from tests.own_servers import OwnRedisCluster

        cluster = OwnRedisCluster(Path(tempfile.mkdtemp(prefix="twotier-cluster-")))
        cluster.start()
        _clusters.append(cluster)
    return str(_clusters[0].url)


def cache_url(kind: str) -> str:
    """The Redis a cache kind runs on: the shared one, or this run's cluster."""
    if "cluster" in kind:
        return redis_cluster_url()
    require("redis")
    return SERVER_URLS["redis"]


def dynamodb_endpoint(kind: str = "dynamodb") -> str:
    """The endpoint of this test run's DynamoDB: moto in server mode (``dynamodb``) or
    dynalite (``dynalite``), each a process of its own on loopback, started on first use
    and stopped when the run ends."""
    if kind not in _dynamodbs:
        from tests.own_servers import DYNALITE, OwnDynamoDB

        if kind == "dynalite" and not DYNALITE.exists():
            message = f"dynalite is not installed ({DYNALITE}): make test-services"
            if REQUIRE_SERVICES:
                pytest.fail(message)
            pytest.skip(message)
        server = OwnDynamoDB(dynalite=kind == "dynalite")
        server.start()
        _dynamodbs[kind] = server
    return str(_dynamodbs[kind].endpoint)


def database_url(kind: str, tmp_path: object) -> str:
    """A URL of a database of this test run, on the given backend (DynamoDB: tables of
    this test's own, by their prefix)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/superhero_db.sqlite3"
    if kind in ("dynamodb", "dynalite"):
        prefix = "t" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:10] + "_"
        endpoint = dynamodb_endpoint(kind)
        return f"dynamodb://?endpoint_url={endpoint}&region=us-east-1&table_prefix={prefix}"
    require(kind)
    return (
        make_url(SERVER_URLS[kind])
        .set(database=f"twotier_test_{RUN_ID}")
        .render_as_string(hide_password=False)
    )


#: The resources the tests declare besides the built-in heroes (products, events).
DECLARED = Path(__file__).with_name("products.toml")


def open_store(url: str, resources: tuple[Resource, ...] | None = None) -> Store:
    """The store at ``url`` (any backend), as the server would open it."""
    return build_store(Settings(database_url=url), resources)


def drop_table(url: str, resources: str | None = None) -> None:
    """Leave a shared test database as other tests expect it: without the resources' tables
    (the heroes', or those ``resources`` declares)."""
    import asyncio

    from twotier.resources import load_resources

    async def drop() -> None:
        store = open_store(url, load_resources(resources))
        try:
            await store.init_schema()
            await store.drop_schema()  # type: ignore[attr-defined]
        finally:
            await store.close()

    asyncio.run(drop())


def make_key(url: str, role: str = "admin") -> str:
    """A new API key with ``role`` in the database at ``url`` (its schema made if missing)."""
    import asyncio

    from twotier.access.keys import Role, create_key

    async def make() -> str:
        store = open_store(url)
        try:
            await store.init_schema()
            return (await create_key(store, f"test {role}", Role(role)))[1]
        finally:
            await store.close()

    return asyncio.run(make())


def forget_namespace(cache_url: str, namespace: str) -> None:
    """Remove a test's keys from the shared Redis (they would expire, but leave no trace)."""
    from twotier.bench.target import forget_keys
    from twotier.errors import CacheUnavailable

    with contextlib.suppress(CacheUnavailable):  # a deliberately dead cache holds nothing
        forget_keys(cache_url, namespace)


def redis_namespace() -> str:
    return f"twotier-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session", autouse=True)
def _drop_test_databases() -> Iterator[None]:
    yield
    for server in _dynamodbs.values():
        server.kill()
    _dynamodbs.clear()
    for cluster in _clusters:
        cluster.stop()
    _clusters.clear()
    import pymysql

    for kind in ("mysql", "postgres"):
        url = make_url(SERVER_URLS[kind])
        name = f"twotier_test_{RUN_ID}"
        try:
            if kind == "mysql":
                conn = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username)
                with conn.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
                conn.close()
            else:
                import subprocess

                subprocess.run(
                    [
                        "psql",
                        "-h",
                        url.host or "127.0.0.1",
                        "-p",
                        str(url.port or 5432),
                        "-U",
                        url.username or "postgres",
                        "-d",
                        "postgres",
                        "-q",
                        "-c",
                        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                    ],
                    check=False,
                    capture_output=True,
                    timeout=30,
                )
        except Exception:
            pass


@pytest.fixture
def moto_endpoint() -> Iterator[str]:
    """A moto server (server mode: real HTTP on loopback) of the test's own."""
    from moto.server import ThreadedMotoServer

    from twotier.bench.target import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def emptied(store: Any) -> AsyncIterator[Any]:
    """``store`` with its resources' tables made anew, empty; dropped and closed after."""
    await store.init_schema()
    await store.drop_schema()
    await store.init_schema()
    try:
        yield store
    finally:
        await store.drop_schema()
        await store.close()


@pytest.fixture
async def store(store_kind: str, tmp_path: object) -> AsyncIterator[Any]:
    """A store with a fresh, empty superheroes table."""
    async with emptied(open_store(database_url(store_kind, tmp_path))) as opened:
        yield opened


@pytest.fixture
async def sqlite_store(tmp_path: object) -> AsyncIterator[SQLStore]:
    sql_store = SQLStore(database_url("sqlite", tmp_path))
    await sql_store.init_schema()
    try:
        yield sql_store
    finally:
        await sql_store.close()


async def make_cache(kind: str, namespace: str | None = None) -> Cache:
    """A cache of the given kind: ``redis`` (the shared Redis), ``cluster`` (this run's
    Redis Cluster); ``near`` and ``near-cluster`` near-caches over them, already
    subscribed; ``resilient-redis``: the shared Redis as the policy uses it."""
    if kind == "memory":
        return MemoryCache(max_entries=10_000)
    if kind.startswith("resilient-"):
        from twotier.cache.resilient import ResilientCache

        return ResilientCache(await make_cache(kind.removeprefix("resilient-")), generation_ttl=600)
    from twotier.cache.near import NearCache
    from twotier.cache.redis import RedisCache

    shared = RedisCache(cache_url(kind), namespace=namespace or redis_namespace(), timeout=2.0)
    if kind in ("redis", "cluster"):
        return shared
    near = NearCache(shared, ttl=60)
    await near.get("warm-up")  # starts the subscription
    for _ in range(200):
        if near.live:
            break
        await asyncio.sleep(0.01)
    assert near.live, "the near-cache did not subscribe"
    return near


@pytest.fixture(params=CACHES)
def cache_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def cache(cache_kind: str) -> AsyncIterator[Cache]:
    made = await make_cache(cache_kind)
    try:
        yield made
    finally:
        await made.clear()
        await made.close()


def settings_for(store_kind: str, cache_kind: str, tmp_path: object, **extra: object) -> Settings:
    """Settings of an app over the given tiers, isolated from every other test."""
    url = "memory://" if cache_kind == "memory" else cache_url(cache_kind)
    # Apps of tests run no follower (it would move generations again after each write,
    # and a test's HIT could turn MISS); tests/follow/ runs them.
    extra = {"follow": "off"} | extra
    if store_kind in ("dynamodb", "dynalite"):
        # Their indexes are updated with the table, never later: no lag to wait out (the
        # window itself is tested with an index that lags, test_dynamodb_index_lag.py).
        extra = {"dynamodb_index_lag": 0.0} | extra
    return Settings(
        database_url=database_url(store_kind, tmp_path),
        cache_url=url,
        cache_namespace=redis_namespace(),
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def binlog_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A mariadbd of the module's own logging rows whole (the shared one logs nothing), for
    the change-log follower's tests."""
    from tests.own_servers import OwnMariaDB

    server = OwnMariaDB(tmp_path_factory.mktemp("binlog"), binlog=True)
    server.start()
    try:
        yield server
    finally:
        server.crash()


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Any]:
    """A new Redis Cluster of the test's own (3 primaries, a replica each), for tests that
    kill, stop or reshape its nodes (the shared one serves the other tests)."""
    from tests.own_servers import OwnRedisCluster

    (tmp_path / "cluster").mkdir()
    made = OwnRedisCluster(tmp_path / "cluster")
    made.start()
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture(scope="module")
def postgres() -> Iterator[Any]:
    """A PostgreSQL cluster of the module's own with ``wal_level=logical`` (the shared one
    has ``replica``), for the change-log follower's tests."""
    from tests.own_servers import OwnPostgres

    server = OwnPostgres()
    server.start()
    try:
        yield server
    finally:
        server.remove()
