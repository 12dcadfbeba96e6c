"""The composition root: the one place where settings become concrete adapters.

Every entrypoint (HTTP, Lambda, CLI) calls ``build_policy``; nothing else constructs a
store or a cache.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from twotier.access.keyring import KeyRing
from twotier.access.rules import Access, AccessRules
from twotier.cache.base import Cache
from twotier.config import Settings
from twotier.policy import AnswerLimits, CachePolicy, Tuning
from twotier.store.sql import SQLStore


def build_store(settings: Settings) -> SQLStore:
    url = settings.database_url
    if settings.database_secret_arn:
        from twotier.secrets import database_url_from_secret

        url = database_url_from_secret(settings.database_secret_arn, settings.database_url)
    return SQLStore(
        url,
        pool_size=settings.database_pool_size,
        timeout=settings.database_timeout,
    )


def build_cache(settings: Settings) -> Cache:
    scheme = urlsplit(settings.cache_url).scheme
    if scheme == "memory":
        from twotier.cache.memory import MemoryCache

        return MemoryCache(settings.cache_max_entries, settings.cache_max_bytes)
    if scheme in ("redis", "rediss", "unix"):
        try:
            from twotier.cache.redis import RedisCache
        except ImportError as error:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "a Redis cache needs the extra: pip install 'twotier[redis]'"
            ) from error

        shared = RedisCache(
            settings.cache_url, namespace=settings.cache_namespace, timeout=settings.cache_timeout
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
    raise ValueError(f"unsupported cache URL scheme {scheme!r}: use memory:// or redis://")


def build_policy(settings: Settings) -> CachePolicy:
    tuning = Tuning(
        ttl=settings.cache_ttl,
        jitter=settings.cache_ttl_jitter,
        negative_ttl=settings.cache_negative_ttl,
    )
    limits = AnswerLimits(rows=settings.batch_max_rows, bytes=settings.batch_max_answer_bytes)
    return CachePolicy(build_store(settings), build_cache(settings), tuning, limits=limits)


def build_access(settings: Settings, policy: CachePolicy) -> Access:
    """Keys from the policy's database; rate limits in its Redis if it has one."""
    from twotier.access.rate_limit import MemoryRateLimiter, RateLimiter

    limiter: RateLimiter = MemoryRateLimiter()
    shared = getattr(policy.cache, "shared", policy.cache)  # behind a near-cache
    redis_client = getattr(shared, "client", None)
    if redis_client is not None:
        from twotier.access.rate_limit_redis import RedisRateLimiter

        limiter = RedisRateLimiter(redis_client, settings.cache_namespace)
    keyring = KeyRing(policy.store, refresh=settings.api_key_refresh)
    return Access(rules_of(settings), keyring, limiter)


def rules_of(settings: Settings) -> AccessRules:
    return AccessRules(
        reads_need_key=settings.require_key_for_reads,
        writes_need_key=settings.require_key_for_writes,
        per_key=settings.rate_limit_per_key,
        per_address=settings.rate_limit_per_address,
        burst_seconds=settings.rate_limit_burst_seconds,
        forwarded_hops=settings.trusted_proxy_hops,
    )
