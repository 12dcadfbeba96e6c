"""Settings from the environment (``TWOTIER_*``): which tiers to use and how to tune them."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./var/superhero_db.sqlite3"


class Settings(BaseSettings):
    """Every knob of twotier; each field is read from ``TWOTIER_<FIELD NAME>``."""

    model_config = SettingsConfigDict(env_prefix="TWOTIER_", extra="ignore")

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description=(
            "Persistent tier: sqlite:///PATH (embedded default), "
            "mysql://USER:PASS@HOST:PORT/DB (MySQL, MariaDB, Aurora MySQL), "
            "postgresql://USER:PASS@HOST:PORT/DB, or "
            "dynamodb://?region=R&endpoint_url=URL&table_prefix=P (DynamoDB; every parameter "
            "optional, credentials from the AWS chain). The database (DynamoDB: the tables) "
            "is created if missing. Unset with TWOTIER_RESOURCES set: a SQLite file named for "
            "the declaration (shop.toml: ./var/shop.sqlite3)."
        ),
    )
    resources: str | None = Field(
        None,
        description="A TOML file declaring the resources to serve (see docs/resources.md); "
        "unset: the seed's superheroes, at /heroes.",
    )
    database_secret_arn: str | None = Field(
        None,
        description="AWS Secrets Manager secret (RDS JSON: username, password, host, port, "
        "dbname, engine) to connect with, instead of credentials in TWOTIER_DATABASE_URL; "
        "read once at start-up.",
    )
    database_pool_size: int = Field(10, ge=1, le=1000, description="Connections per process.")
    sqlite_synchronous: Literal["full", "normal"] = Field(
        "full",
        description="SQLite: full (every acknowledged write survives a crash of the OS or a "
        "power cut: the log is synced at each commit) or normal (a crash of the OS may lose "
        "the last writes, never corrupt the file; faster writes: docs/guarantees.md).",
    )
    database_timeout: float = Field(
        5.0, gt=0, description="Seconds to wait for a connection or a lock."
    )
    dynamodb_index_lag: float = Field(
        1.0,
        ge=0,
        description="DynamoDB: seconds a global secondary index may lag the table. A lookup "
        "read within this time of a write to its value is answered but not cached (a "
        "lagging index would otherwise stay in the cache until the next write or the TTL).",
    )

    cache_url: str = Field(
        "memory://",
        description="Cache tier: memory:// (in-process LRU), redis://HOST:PORT/DB, rediss://... "
        "(TLS), or redis+cluster://HOST:PORT, rediss+cluster://... (Redis Cluster: any node "
        "or the configuration endpoint).",
    )
    cache_secret_arn: str | None = Field(
        None,
        description="AWS Secrets Manager secret with the cache's credentials (JSON: password, "
        "and username for an ElastiCache user), put into TWOTIER_CACHE_URL at start-up so "
        "they never sit in configuration (the CDK stacks make it).",
    )
    cache_namespace: str = Field(
        "twotier",
        min_length=1,
        # Braces would make the prefix a Redis Cluster hash tag: every key in one slot.
        pattern=r"^[^{}]+$",
        description="Prefix of every cache key, to share a Redis (no braces).",
    )
    cache_ttl: float = Field(300.0, gt=0, description="Seconds a cached row lives.")
    cache_ttl_jitter: float = Field(
        0.1, ge=0, lt=1, description="Fraction of the TTL randomly taken off each entry."
    )
    cache_negative_ttl: float = Field(
        30.0, gt=0, description="Seconds an 'absent row' answer is cached."
    )
    cache_max_entries: int = Field(
        1_000_000, ge=1, description="Most entries the in-process cache (memory://) holds."
    )
    cache_max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Most bytes the in-process cache (memory://) holds: each entry counts its "
        "JSON, its key and about 330 bytes of bookkeeping; least recently used entries go "
        "first, and no entry larger than an eighth of this is kept.",
    )
    near_cache_ttl: float = Field(
        10.0,
        ge=0,
        description="With Redis: seconds an entry lives in the in-process near-cache in front "
        "of it (0 turns it off). Bounds staleness should an invalidation message be lost on "
        "a live link (a dead link empties the near-cache within 3 s).",
    )
    near_cache_max_entries: int = Field(
        100_000, ge=1, description="Most entries the near-cache holds, per process."
    )
    near_cache_max_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024 * 1024,
        description="Most bytes the near-cache holds, per process (counted as for "
        "TWOTIER_CACHE_MAX_BYTES).",
    )
    cache_timeout: float = Field(
        0.5, gt=0, description="Seconds before a cache call is given up (then served from DB)."
    )
    cache_replica_wait: float = Field(
        0.1,
        ge=0,
        description="Redis Cluster: seconds a write-through waits for a replica of each "
        "primary it wrote to (WAIT), so that a failover does not lose it; 0: no wait.",
    )

    follow: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Run the change-log follower in the server (see docs/operations.md): on, "
        "off, or auto (on for SQLite, the embedded default; elsewhere run `twotier follow` or "
        "`serve --follow`). Any number may run: one follows at a time.",
    )

    follower_user: str | None = Field(
        None,
        description="A database user of the change-log follower's own (MySQL, MariaDB, "
        "PostgreSQL): `db init` and every server starting make it, or bring its password "
        "and grants up to date, with the replication privileges and the read of twotier's "
        "identity, nothing else; the follower then connects as it. Its password: "
        "TWOTIER_FOLLOWER_PASSWORD.",
    )
    follower_password: SecretStr | None = Field(
        None, description="The password of TWOTIER_FOLLOWER_USER."
    )
    follower_secret_arn: str | None = Field(
        None,
        description="AWS Secrets Manager secret (JSON: username, password) of the follower's "
        "user, instead of TWOTIER_FOLLOWER_USER and TWOTIER_FOLLOWER_PASSWORD.",
    )
    follower_host: str = Field(
        "%",
        description="MySQL, MariaDB: where the follower's user may connect from, as MySQL "
        "names hosts ('%': anywhere), or a network (10.0.0.0/16: the CDK stacks give their "
        "VPC's). Its accounts at other hosts are dropped.",
    )

    page_limit_default: int = Field(
        100, ge=1, description="Rows per page of a list (GET /{resource})."
    )
    page_limit_max: int = Field(
        1000, ge=1, description="Largest `limit` a list (GET /{resource}) accepts."
    )
    batch_max_items: int = Field(
        10_000, ge=1, description="Most SQLS items one seed batch event may carry (else 400)."
    )
    batch_max_rows: int = Field(
        10_000,
        ge=1,
        description="Most rows one batch read may answer, counting a value asked twice "
        "twice (else 400); the database reads at most about twice this for one request.",
    )
    batch_max_answer_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Most bytes one batch read may answer (else 400)."
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body accepted (else 413)."
    )
    body_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a request's body may take to arrive, from the request's start "
        "(else 408).",
    )
    body_buffer_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Most bytes of request bodies a process holds at once, being received or "
        "served (else 503 with Retry-After), each counted at what it takes once parsed (a "
        "bound from its bytes: up to some 70 times them for a body of tiny values); at "
        "least TWOTIER_MAX_BODY_BYTES.",
    )

    require_key_for_reads: bool = Field(
        False, description="Reads (GET, batch reads) need an API key with role read."
    )
    require_key_for_writes: bool = Field(
        True,
        description="Writes need an API key with role write. Turning this off opens writes "
        "to anyone who can reach the API: only for a private network or a trial.",
    )
    api_key_refresh: float = Field(
        5.0,
        ge=0,
        description="Seconds between reloads of the active keys (a revoked key "
        "stops working within this time).",
    )
    rate_limit_per_key: float = Field(
        0.0, ge=0, description="Requests a second each API key may make (0: no limit)."
    )
    rate_limit_per_address: float = Field(
        0.0,
        ge=0,
        description="Requests a second each client address may make without a valid key "
        "(0: no limit).",
    )
    anonymous_bypass_per_second: float = Field(
        20.0,
        ge=0,
        description="Reads without a key that ask to skip the cache (Cache-Control: no-cache "
        "or no-store, a batch's USE_CACHE False) served from the database per second, "
        "across every caller without a key (in Redis when it is the cache, else per "
        "process); past it they are answered 429. Reads with a key are not counted.",
    )
    rate_limit_burst_seconds: float = Field(
        2.0, gt=0, description="A rate limit allows bursts of this many seconds' worth."
    )
    trusted_proxy_hops: int = Field(
        0,
        ge=0,
        description="Proxies in front of the server (1 behind an ALB) whose X-Forwarded-For "
        "entries name the client address; 0 uses the connection's peer.",
    )

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Least severe log level written (JSON lines on stdout)."
    )
    access_log: bool = Field(True, description="Write one JSON log line per request.")
    emf_every: float = Field(
        0.0,
        ge=0,
        description="Seconds between CloudWatch EMF lines of the server's metrics on stdout "
        "(each worker's), readiness among them (0: none; the CDK container stack sets 60).",
    )
    docs: Literal["open", "off"] = Field(
        "open",
        description="open: /docs, /redoc and /openapi.json are served to anyone; off: none of "
        "them is served (404), for a deployment that does not publish its API's shape.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins browsers may call the API from, as a JSON list (["https://a.example"]'
        ', or ["*"] for any); empty: no CORS headers.',
    )

    @model_validator(mode="after")
    def _own_tables_in_a_file_of_their_own(self) -> Settings:
        # The embedded default file is the superheroes'; declared tables get one named for
        # their declaration, never the heroes' file.
        if self.resources and "database_url" not in self.model_fields_set:
            stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(self.resources).stem) or "twotier"
            self.database_url = f"sqlite:///./var/{stem}.sqlite3"
        return self

    @model_validator(mode="after")
    def _one_body_fits_the_buffer(self) -> Settings:
        if self.body_buffer_bytes < self.max_body_bytes:
            raise ValueError(
                "TWOTIER_BODY_BUFFER_BYTES must be at least TWOTIER_MAX_BODY_BYTES "
                f"({self.max_body_bytes})"
            )
        return self

    @model_validator(mode="after")
    def _follower_user_with_its_password(self) -> Settings:
        if (self.follower_user is None) != (self.follower_password is None):
            raise ValueError("TWOTIER_FOLLOWER_USER and TWOTIER_FOLLOWER_PASSWORD go together")
        from twotier.store.sql_follower_names import check_host, check_user_name

        if self.follower_user is not None:
            check_user_name(self.follower_user)
        check_host(self.follower_host)
        if (self.follower_user or self.follower_secret_arn) and self.database_url.startswith(
            ("sqlite", "dynamodb")
        ):
            raise ValueError(
                "a follower user is for MySQL, MariaDB and PostgreSQL: SQLite has no users "
                "and DynamoDB's follower reads the Streams with IAM's leave"
            )
        return self

    @property
    def on_dynamodb(self) -> bool:
        """Whether the database is DynamoDB (``dynamodb://``): its lists are by key or a
        scan's order, without operators (``api.list_query``)."""
        return urlsplit(self.database_url).scheme == "dynamodb"

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
