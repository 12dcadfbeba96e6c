"""The use cases: what every entrypoint (the HTTP routes and hot path, Lambda, the CLI) calls.

An entrypoint translates its input into one of these and their result into its output; none
reaches into a store or a cache. Reads and writes of a resource's rows are its policy's
(``resource(name)``); keys, sample data, bulk loads, readiness and the live figures are here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from twotier.access.keyring import KeyRing
from twotier.access.keys import KeyRecord, Role, create_key
from twotier.cache.base import FollowerState
from twotier.cache.resilient import ResilientCache
from twotier.dataset import generate
from twotier.errors import CacheUnavailable, StoreUnavailable, UnknownResource
from twotier.policy import AnswerLimits, ResourcePolicy, Tuning
from twotier.resources import Resource, default_resource
from twotier.resources.introspected import Introspected, checked
from twotier.store.base import Detachment, FollowerUser, LoadRows, SchemaChange, Store
from twotier.telemetry import LIVE_STATE, GaugeReadings

_SAMPLE_CHUNK = 5000  # rows per transaction when adding sample data
#: Seconds a readiness check answers for (``readiness``).
READINESS_MAX_AGE = 1.0


class Service:
    def __init__(
        self,
        store: Store,
        cache: ResilientCache,
        resources: Sequence[Resource],
        *,
        tuning: Tuning | None = None,
        limits: AnswerLimits | None = None,
        key_refresh: float = 5.0,
        follower: FollowerUser | None = None,
        follower_state: FollowerState | None = None,
    ) -> None:
        self.store = store
        self.cache = cache
        #: Where a change-log follower keeps its lease and position (the cache server, not
        #: through ``cache``: a lease is never remembered for later, nor kept locally).
        self.follower_state = follower_state
        self.resources = {resource.name: resource for resource in resources}
        self._policies = {
            resource.name: ResourcePolicy(store.rows(resource.name), cache, tuning, limits)
            for resource in resources
        }
        self.keyring = KeyRing(store, refresh=key_refresh)
        #: The database's identity (``Store.identity``), known once prepared.
        self.database_id = ""
        self._follower = follower
        self._readiness: tuple[float, dict[str, str]] | None = None  # (when, states)
        self._checking: asyncio.Lock | None = None

    def resource(self, name: str) -> ResourcePolicy:
        """The reads and writes of one resource's rows; UnknownResource if none is ``name``."""
        try:
            return self._policies[name]
        except KeyError:
            raise UnknownResource(name) from None

    @property
    def default_resource(self) -> str:
        """The resource the seed's batch protocol addresses without ``RESOURCE``."""
        return default_resource(list(self.resources.values()))

    # -- life -----------------------------------------------------------------------------

    async def prepare(self, *, schema: bool = True, if_changed: bool = False) -> list[SchemaChange]:
        """Create (or adopt) the schema (idempotent; every process may call it) and the
        follower's user if one is configured, file the cache's entries under the
        database's identity, and show the live state on /metrics; what was changed in the
        database, one line each. ``schema=False``: the schema is only read (a follower,
        whose user may change nothing). ``if_changed``: the schema is left alone if the
        database records this declaration made by this version (``Store.init_schema``)."""
        changes: list[SchemaChange] = []
        if schema:
            changes = await self.store.init_schema(if_changed=if_changed)
            if self._follower is not None:
                await self.store.grant_follower(self._follower)
        self.database_id = await self.store.identity()
        await self.store.learn()
        for policy in self._policies.values():
            policy.serve_database(self.database_id)
        LIVE_STATE.watch(self.gauges)
        return changes

    async def plan_schema(self) -> list[SchemaChange]:
        """What ``prepare`` would change in the database, each change with its statements,
        changing nothing (SchemaMismatch, with every contradiction, if a declaration
        contradicts its table)."""
        return await self.store.init_schema(dry_run=True)

    async def detach(self, *, dry_run: bool = False) -> Detachment:
        """Take out of the database what twotier added for its own use, leaving the
        user's rows as they were (``Store.detach``); ``dry_run``: only say what."""
        return await self.store.detach(dry_run=dry_run)

    async def introspect(self, tables: Sequence[str] | None = None) -> list[Introspected]:
        """The database's tables (or ``tables``) as a declaration would describe them, each
        checked by the declaration's parser; what cannot be served is left out, with why."""
        return checked(await self.store.introspect(tables))

    async def readiness(self) -> dict[str, str]:
        """Each tier's state: "ok", or what is wrong with it; from a check at most
        ``READINESS_MAX_AGE`` seconds old, one at a time (the probe is open to anyone, and
        each check is a round trip to each tier: any number of probes cost one a second)."""
        self._checking = self._checking or asyncio.Lock()
        async with self._checking:
            checked = self._readiness
            if checked is not None and time.monotonic() - checked[0] < READINESS_MAX_AGE:
                return checked[1]
            status = await self._check_tiers()
            self._readiness = (time.monotonic(), status)
            return status

    async def _check_tiers(self) -> dict[str, str]:
        status: dict[str, str] = {}
        for name, ping, errors in (
            ("database", self.store.ping, (StoreUnavailable,)),
            ("cache", self.cache.ping, (CacheUnavailable,)),
        ):
            try:
                await ping()
                status[name] = "ok"
            except errors as error:
                status[name] = str(error)
        return status

    def gauges(self) -> GaugeReadings:
        """The live state an operator watches: pool, breaker, backlog, in-process caches."""
        readings = dict(self.cache.readings())
        pool = self.store.pool_usage()
        if pool:
            readings["twotier_database_pool_connections"] = (
                "Database connections of this process, by state.",
                {(("state", name),): float(count) for name, count in pool.items()},
            )
        return readings

    async def close(self) -> None:
        LIVE_STATE.forget(self.gauges)
        await self.cache.close()
        await self.store.close()

    # -- API keys -------------------------------------------------------------------------

    async def create_key(self, name: str, role: Role) -> tuple[KeyRecord, str]:
        """Make a key (ValueError for a name that cannot be one); it works at once here."""
        made = await create_key(self.store, name, role)
        await self.keyring.reload(force=True)
        return made

    async def list_keys(self) -> list[KeyRecord]:
        return await self.store.list_keys()

    async def revoke_key(self, key_id: str) -> bool:
        """Revoke a key: refused at once here, elsewhere within the keyring's refresh."""
        revoked = await self.store.revoke_key(key_id, datetime.now(UTC))
        if revoked:
            await self.keyring.reload(force=True)
        return revoked

    # -- data -----------------------------------------------------------------------------

    async def add_samples(self, name: str, rows: int, *, seed: int = 0, force: bool = False) -> int:
        """Add generated rows to a resource through its policy (so the cache learns of
        them); none if it holds rows already, unless ``force``."""
        policy = self.resource(name)
        if not force and await policy.rows.count():
            return 0
        start = await policy.rows.count() + 1 if not policy.resource.auto_key else 1
        made: Iterator[dict[str, Any]] = generate(policy.resource, rows, seed, start=start)
        chunk_size = min(_SAMPLE_CHUNK, policy.rows.batch_limit or _SAMPLE_CHUNK)
        while chunk := list(islice(made, chunk_size)):
            await policy.create_many(chunk)
        return rows

    async def load(
        self, name: str, rows: LoadRows, *, replace: bool, keep: Callable[[], bool]
    ) -> int:
        """Bulk-load rows into a resource, then forget what the cache holds."""
        return await self.resource(name).bulk_load(rows, replace=replace, keep=keep)
