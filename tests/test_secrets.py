"""Database credentials from Secrets Manager (moto's server mode) and a real MariaDB."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import make_url

from tests.conftest import SERVER_URLS, database_url
from tests.own_servers import OwnRedis
from twotier.bootstrap import build_cache, build_store, follower_user
from twotier.config import Settings
from twotier.errors import CacheUnavailable
from twotier.store.base import FollowerUser
from twotier.store.sql import SQLStore


@pytest.fixture
def secrets_manager(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    return moto_endpoint


def create_secret(value: object) -> str:
    import boto3

    client = boto3.client("secretsmanager")
    name = f"twotier-test-{os.urandom(4).hex()}"
    return str(client.create_secret(Name=name, SecretString=json.dumps(value))["ARN"])


async def test_the_store_connects_with_the_secret(secrets_manager: str, tmp_path: object) -> None:
    target = make_url(database_url("mysql", tmp_path))
    arn = create_secret(
        {
            "engine": "mysql",
            "host": target.host,
            "port": target.port or 3306,
            "username": target.username,
            "password": "",
            "dbname": target.database,
        }
    )
    # The configured URL carries no credentials at all.
    store = build_store(Settings(database_url="mysql://nobody@unused/", database_secret_arn=arn))
    assert isinstance(store, SQLStore)
    try:
        assert store.url.host == target.host
        assert store.url.database == target.database
        await store.init_schema()  # creates the database and the table, with those credentials
        await store.ping()
        await store.drop_schema()
    finally:
        await store.close()


def test_a_bad_secret_is_a_clear_error(secrets_manager: str) -> None:
    arn = create_secret({"user": "no password key"})
    with pytest.raises(RuntimeError, match="must be JSON with username, password and host"):
        build_store(Settings(database_url=SERVER_URLS["mysql"], database_secret_arn=arn))
    with pytest.raises(RuntimeError, match="cannot read the database secret"):
        build_store(Settings(database_secret_arn="arn:aws:secretsmanager:us-east-1:1:secret:nope"))


def test_the_password_never_reaches_a_log_line(
    secrets_manager: str, caplog: pytest.LogCaptureFixture
) -> None:
    arn = create_secret(
        {
            "engine": "postgres",
            "host": "127.0.0.1",
            "port": 1,
            "username": "u",
            "password": "s3cr3t-from-secret",
            "dbname": "d",
        }
    )
    store = build_store(Settings(database_secret_arn=arn))
    assert isinstance(store, SQLStore)
    assert store.backend == "postgresql"
    assert "s3cr3t-from-secret" not in caplog.text
    assert "s3cr3t-from-secret" not in repr(store.url)


def test_the_followers_user_comes_from_its_secret(secrets_manager: str) -> None:
    """The follower's own user, as the CDK stacks give it (an RDS-style secret): its name
    and password read at start-up, the password kept out of every repr."""
    arn = create_secret({"username": "twotier_follower", "password": "f0ll0wer-secret"})
    settings = Settings(database_url=SERVER_URLS["mysql"], follower_secret_arn=arn)
    user = follower_user(settings)
    assert user == FollowerUser("twotier_follower", "f0ll0wer-secret")
    assert "f0ll0wer-secret" not in repr(user)
    bad = create_secret({"username": "Robert'); DROP", "password": "x"})
    with pytest.raises(ValueError, match="must be 1-32 of"):
        follower_user(Settings(database_url=SERVER_URLS["mysql"], follower_secret_arn=bad))
    with pytest.raises(RuntimeError, match="the follower secret must be JSON with username and"):
        follower_user(
            Settings(
                database_url=SERVER_URLS["mysql"],
                follower_secret_arn=create_secret({"username": "twotier_follower"}),
            )
        )


async def test_the_cache_connects_with_the_secret(secrets_manager: str, tmp_path: Path) -> None:
    """An ElastiCache user's name and password from Secrets Manager (as the CDK stacks
    make them), never in TWOTIER_CACHE_URL: a Redis of the test's own that takes that user
    alone (its default user off)."""
    redis = OwnRedis(tmp_path, user=("twotier", "a-long-secret-of-the-cache"))
    redis.start()
    try:
        arn = create_secret({"username": "twotier", "password": "a-long-secret-of-the-cache"})
        with_secret = Settings(cache_url=redis.url, cache_secret_arn=arn)
        cache = build_cache(with_secret)
        try:
            await cache.ping()
        finally:
            await cache.close()
        without = build_cache(Settings(cache_url=redis.url))
        try:
            with pytest.raises(CacheUnavailable):
                await without.ping()
        finally:
            await without.close()
        assert "a-long-secret" not in with_secret.model_dump_json()
    finally:
        redis.kill()
