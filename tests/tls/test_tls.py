"""Encryption in transit, for real: a redis-server, a Redis Cluster and a mariadbd of the
test's own that speak only TLS, with certificates from a CA the test makes. The right CA is
trusted; a wrong CA is refused with an error that says so."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import make_key, require, settings_for
from tests.heroes import hero
from tests.own_servers import OwnMariaDB, OwnRedis, OwnRedisCluster
from tests.pki import Pki, make_pki
from twotier.api.app import create_app
from twotier.bootstrap import build_cache
from twotier.cache.base import Entry
from twotier.cache.near import NearCache
from twotier.config import Settings
from twotier.errors import CacheUnavailable, StoreUnavailable
from twotier.store.sql import SQLStore
from twotier.store.sql_tls import split_tls
from twotier.store.sql_url import DatabaseURL

HERO = {"name": "Ada", "hero": "Captain Ada", "power": "math", "xp": 5, "color": "blue"}
REFUSED = "certificate verify failed"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_redis(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    require("redis")  # the binaries come with the service
    redis = OwnRedis(tmp_path_factory.mktemp("redis"), pki)
    redis.start()
    try:
        yield redis
    finally:
        redis.kill()


@pytest.fixture(scope="module")
def tls_mariadb(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnMariaDB]:
    require("mysql")
    database = OwnMariaDB(tmp_path_factory.mktemp("mariadb"), pki)
    database.start()
    try:
        yield database
    finally:
        database.crash()


def with_ca(url: str, name: str, ca: Path) -> str:
    base = url.split("?", 1)[0]
    return f"{base}?{name}={ca}"


def cache_settings(url: str) -> Settings:
    return Settings(cache_url=url, cache_namespace="tls", near_cache_ttl=0, cache_timeout=2)


async def test_rediss_verifies_the_server_certificate(tls_redis: OwnRedis) -> None:
    cache = build_cache(cache_settings(tls_redis.url))
    try:
        await cache.ping()
        assert await cache.put_if_newer("k", Entry(1, b"v"), 60)
        assert await cache.get("k") == Entry(1, b"v")
    finally:
        await cache.clear()
        await cache.close()


async def test_rediss_refuses_a_server_signed_by_another_ca(tls_redis: OwnRedis, pki: Pki) -> None:
    cache = build_cache(cache_settings(with_ca(tls_redis.url, "ssl_ca_certs", pki.wrong_ca)))
    try:
        with pytest.raises(CacheUnavailable, match=REFUSED):
            await cache.ping()
    finally:
        await cache.close()


def test_the_api_over_tls_redis_and_what_a_wrong_ca_looks_like(
    tls_redis: OwnRedis, pki: Pki, tmp_path: Path
) -> None:
    settings = settings_for("sqlite", "memory", tmp_path).model_copy(
        update={"cache_url": tls_redis.url}
    )
    key = make_key(settings.database_url, "write")
    with TestClient(create_app(settings), headers={"X-API-Key": key}) as client:
        assert client.get("/readyz").json() == {"status": "ok", "database": "ok", "cache": "ok"}
        hero_id = client.post("/heroes", json=HERO).json()["id"]
        assert client.get(f"/heroes/{hero_id}").headers["x-cache"] == "HIT"

    wrong = settings.model_copy(
        update={"cache_url": with_ca(tls_redis.url, "ssl_ca_certs", pki.wrong_ca)}
    )
    admin = {"X-API-Key": make_key(settings.database_url, "admin")}  # sees the reason
    with TestClient(create_app(wrong), raise_server_exceptions=False, headers=admin) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert REFUSED in ready.json()["cache"]
        # The cache is refused, not trusted: reads come from the database.
        served = client.get(f"/heroes/{hero_id}")
        assert (served.status_code, served.headers["x-cache"]) == (200, "BYPASS")


def mariadb_url(database: OwnMariaDB, query: str = "") -> str:
    return f"mysql://root@127.0.0.1:{database.port}/superhero_db{query}"


async def test_mariadb_over_tls_with_the_right_ca(tls_mariadb: OwnMariaDB, pki: Pki) -> None:
    store = SQLStore(mariadb_url(tls_mariadb, f"?ssl_ca={pki.ca}"))
    try:
        await store.init_schema()
        async with store.engine.connect() as conn:
            cipher = (await conn.execute(text("SHOW SESSION STATUS LIKE 'Ssl_cipher'"))).one()
        assert cipher[1], "the session is not encrypted"
        heroes = store.rows("heroes")
        [record] = await heroes.create_many([hero()])
        assert (await heroes.get(record.key)) == record
        # The bulk path opens a connection of its own: over TLS too.
        loaded = await heroes.bulk_load(
            [((1000, "Bo", "Bolt", "run", 7, "red"), "1000,Bo,Bolt,run,7,red")],
            replace=False,
            keep=lambda: True,
        )
        assert loaded == 1
        assert await heroes.count() == 2
    finally:
        await store.drop_schema()
        await store.close()


async def test_mariadb_refuses_plain_connections_and_a_wrong_ca(
    tls_mariadb: OwnMariaDB, pki: Pki
) -> None:
    for query, expected in [
        ("", "Access denied|insecure transport"),  # the server insists on TLS
        (f"?ssl_ca={pki.wrong_ca}", REFUSED),
    ]:
        store = SQLStore(mariadb_url(tls_mariadb, query), timeout=5)
        try:
            with pytest.raises(StoreUnavailable, match=expected):
                await store.init_schema()
        finally:
            await store.close()


@pytest.mark.parametrize(
    ("query", "verify", "hostname"),
    [
        ("sslmode=require", ssl.CERT_NONE, False),  # libpq: encrypted, not verified
        ("sslmode=verify-ca&sslrootcert={ca}", ssl.CERT_REQUIRED, False),
        ("sslmode=verify-full&sslrootcert={ca}", ssl.CERT_REQUIRED, True),
        ("sslrootcert={ca}", ssl.CERT_REQUIRED, True),  # a CA given: verify fully
    ],
)
def test_postgresql_tls_parameters_become_one_context(
    pki: Pki, query: str, verify: ssl.VerifyMode, hostname: bool
) -> None:
    url = DatabaseURL.parse(
        f"postgresql+asyncpg://u:p@db.example/app?{query.format(ca=pki.ca)}&x=1"
    )
    bare, context = split_tls(url)
    assert bare.query == {"x": "1"}  # the driver never sees libpq's names
    assert context is not None
    assert (context.verify_mode, context.check_hostname) == (verify, hostname)


def test_mysql_tls_parameters_become_one_context(pki: Pki) -> None:
    url = DatabaseURL.parse(f"mysql+aiomysql://u:p@db.example/app?ssl_ca={pki.ca}&charset=utf8mb4")
    bare, context = split_tls(url)
    assert bare.query == {"charset": "utf8mb4"}
    assert context is not None
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    _, relaxed = split_tls(url.update_query_dict({"ssl_check_hostname": "false"}))
    assert relaxed is not None
    assert not relaxed.check_hostname
    assert split_tls(DatabaseURL.parse("mysql+aiomysql://u@h/app")) == (
        DatabaseURL.parse("mysql+aiomysql://u@h/app"),
        None,
    )
    with pytest.raises(ValueError, match="unknown sslmode"):
        split_tls(DatabaseURL.parse("postgresql+asyncpg://u@h/app?sslmode=sometimes"))


@pytest.fixture(scope="module")
def tls_cluster(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedisCluster]:
    """A Redis Cluster that speaks only TLS (clients, bus, replication)."""
    require("redis")
    cluster = OwnRedisCluster(tmp_path_factory.mktemp("cluster"), pki=pki)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_rediss_cluster_verifies_every_node_and_subscribes_over_tls(
    tls_cluster: OwnRedisCluster,
) -> None:
    """``rediss+cluster://`` (ElastiCache Serverless speaks nothing else): the nodes the
    cluster names are reached over TLS with the URL's CA, commands and shard subscriptions
    alike."""
    settings = cache_settings(tls_cluster.url).model_copy(update={"near_cache_ttl": 10.0})
    cache = build_cache(settings)
    assert isinstance(cache, NearCache)
    try:
        await cache.ping()
        keys = [f"k{n}" for n in range(30)]  # over every shard
        for n, key in enumerate(keys):
            assert await cache.put_if_newer(key, Entry(n + 1, b"v"), 60)
        assert await cache.get_many(keys) == [Entry(n + 1, b"v") for n in range(30)]
        await cache.get("warm-up")  # starts the subscription: one TLS link per primary
        for _ in range(300):
            if cache.live:
                break
            await asyncio.sleep(0.02)
        assert cache.live
    finally:
        await cache.clear()
        await cache.close()


async def test_rediss_cluster_refuses_nodes_signed_by_another_ca(
    tls_cluster: OwnRedisCluster, pki: Pki
) -> None:
    wrong = with_ca(tls_cluster.url, "ssl_ca_certs", pki.wrong_ca)
    cache = build_cache(cache_settings(wrong))
    try:
        with pytest.raises(CacheUnavailable, match=REFUSED):
            await cache.ping()
    finally:
        await cache.close()
