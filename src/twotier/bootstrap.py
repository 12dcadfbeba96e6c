"""The composition root: the one place where settings become concrete adapters.

Every entrypoint (HTTP, Lambda, CLI) calls ``build_service``; nothing else constructs a
store, a cache or a Redis client. The declared resources are read here too, once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from twotier import __version__
from twotier.access.rate_limit import MemoryRateLimiter, RateLimiter
from twotier.access.rules import Access, AccessRules
from twotier.cache.base import CacheServer
from twotier.cache.resilient import ResilientCache
from twotier.config import Settings
from twotier.logs import redacted_url
from twotier.policy import AnswerLimits, Tuning
from twotier.resources import Resource, load_resources
from twotier.service import Service
from twotier.store.base import FollowerUser, Store

if TYPE_CHECKING:
    from twotier.cache.redis_client import RedisClient

log = logging.getLogger("twotier")

_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")


def declared_resources(settings: Settings) -> tuple[Resource, ...]:
    """The resources TWOTIER_RESOURCES declares (the seed's heroes when it is unset);
    ResourceError, one line, for a file that cannot be served."""
    return load_resources(settings.resources)


def build_store(settings: Settings, resources: tuple[Resource, ...] | None = None) -> Store:
    """The store the database URL names: ``dynamodb://`` (DynamoStore), else SQL."""
    declared = resources if resources is not None else declared_resources(settings)
    if settings.on_dynamodb:
        try:
            from twotier.store.dynamo import DynamoStore
        except ImportError as error:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "a DynamoDB database needs the extra: pip install 'twotier[dynamodb]'"
            ) from error
        return DynamoStore(
            settings.database_url,
            declared,
            pool_size=settings.database_pool_size,
            timeout=settings.database_timeout,
            lookup_lag=settings.dynamodb_index_lag,
        )
    from twotier.store.sql import SQLStore

    url = settings.database_url
    if settings.database_secret_arn:
        from twotier.secrets import database_url_from_secret

        url = database_url_from_secret(settings.database_secret_arn, settings.database_url)
    return SQLStore(
        url,
        declared,
        pool_size=settings.database_pool_size,
        timeout=settings.database_timeout,
        sqlite_synchronous=settings.sqlite_synchronous,
    )


def follower_user(settings: Settings) -> FollowerUser | None:
    """The follower's own database user, if one is configured (its secret read now)."""
    if settings.follower_secret_arn:
        from twotier.secrets import read_secret
        from twotier.store.sql_follower_names import check_user_name

        secret = read_secret(settings.follower_secret_arn, "follower", ("username", "password"))
        name = check_user_name(str(secret["username"]))
        return FollowerUser(name, str(secret["password"]), settings.follower_host)
    if settings.follower_user and settings.follower_password:
        password = settings.follower_password.get_secret_value()
        return FollowerUser(settings.follower_user, password, settings.follower_host)
    return None


def cache_url(settings: Settings) -> str:
    """The cache's URL, with the credentials of TWOTIER_CACHE_SECRET_ARN if it names a
    secret (read now)."""
    if not settings.cache_secret_arn:
        return settings.cache_url
    from twotier.secrets import read_secret

    secret = read_secret(settings.cache_secret_arn, "cache", ("password",))
    parts = urlsplit(settings.cache_url)
    user = quote(str(secret.get("username", "")), safe="")
    where = parts.netloc.rpartition("@")[2]
    netloc = f"{user}:{quote(str(secret['password']), safe='')}@{where}"
    return urlunsplit(parts._replace(netloc=netloc))


def _redis(settings: Settings, url: str) -> RedisClient | None:
    """The Redis connection pool the cache and the rate limits share (None: no Redis);
    ``url``: the cache's, with its credentials (``cache_url``)."""
    if urlsplit(url).scheme not in _REDIS_SCHEMES:
        return None
    try:
        from twotier.cache.redis_client import redis_client
    except ImportError as error:  # pragma: no cover - depends on the install
        raise RuntimeError("a Redis cache needs the extra: pip install 'twotier[redis]'") from error
    return redis_client(url, settings.cache_timeout)


def build_cache(settings: Settings, client: Any = None, url: str | None = None) -> CacheServer:
    """The cache the settings name; ``url`` (default: read now) the cache's with its
    credentials, ``client`` a Redis pool to share."""
    url = url if url is not None else cache_url(settings)
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from twotier.cache.memory import MemoryCache

        return MemoryCache(settings.cache_max_entries, settings.cache_max_bytes)
    if scheme in _REDIS_SCHEMES:
        from twotier.cache.redis import RedisCache

        shared = RedisCache(
            url,
            namespace=settings.cache_namespace,
            timeout=settings.cache_timeout,
            client=client if client is not None else _redis(settings, url),
            replica_wait=settings.cache_replica_wait,
        )
        if not settings.near_cache_ttl:
            return shared
        from twotier.cache.near import NearCache

        return NearCache(
            shared,
            max_entries=settings.near_cache_max_entries,
            max_bytes=settings.near_cache_max_bytes,
            ttl=settings.near_cache_ttl,
        )
    raise ValueError(
        f"unsupported cache URL scheme {scheme!r}: use memory://, redis:// or redis+cluster://"
    )


def tuning_of(settings: Settings) -> Tuning:
    return Tuning(
        ttl=settings.cache_ttl,
        jitter=settings.cache_ttl_jitter,
        negative_ttl=settings.cache_negative_ttl,
    )


@dataclass(frozen=True, slots=True)
class Composition:
    """What a serving process is made of: the use cases, and who may use them how often."""

    service: Service
    access: Access


def compose(settings: Settings) -> Composition:
    """The service and the access rules over one set of adapters (one Redis pool for the
    cache and the rate limits)."""
    resources = declared_resources(settings)
    tuning = tuning_of(settings)
    url = cache_url(settings)
    client = _redis(settings, url)
    adapter = build_cache(settings, client, url)
    cache = ResilientCache(
        adapter,
        generation_ttl=tuning.generation_ttl,
        shards_fail_alone=urlsplit(settings.cache_url).scheme.endswith("+cluster"),
    )
    service = Service(
        build_store(settings, resources),
        cache,
        resources,
        tuning=tuning,
        limits=AnswerLimits(rows=settings.batch_max_rows, bytes=settings.batch_max_answer_bytes),
        key_refresh=settings.api_key_refresh,
        follower=follower_user(settings),
        follower_state=adapter,
    )
    limiter: RateLimiter = MemoryRateLimiter()
    if client is not None:
        from twotier.cache.redis_rate_limit import RedisRateLimiter

        limiter = RedisRateLimiter(client, settings.cache_namespace)
    return Composition(service, Access(rules_of(settings), service.keyring, limiter))


def build_service(settings: Settings) -> Service:
    """The use cases alone (the CLI's commands)."""
    return compose(settings).service


def rules_of(settings: Settings) -> AccessRules:
    return AccessRules(
        reads_need_key=settings.require_key_for_reads,
        writes_need_key=settings.require_key_for_writes,
        per_key=settings.rate_limit_per_key,
        per_address=settings.rate_limit_per_address,
        burst_seconds=settings.rate_limit_burst_seconds,
        forwarded_hops=settings.trusted_proxy_hops,
        anonymous_bypass=settings.anonymous_bypass_per_second,
    )


def log_start(settings: Settings) -> None:
    """The start-up line: what this process serves from (URLs without their passwords)."""
    log.info(
        "started",
        extra={
            "version": __version__,
            "database": redacted_url(settings.database_url),
            "cache": redacted_url(settings.cache_url),
            "cache_ttl": settings.cache_ttl,
            "resources": [resource.name for resource in declared_resources(settings)],
        },
    )
