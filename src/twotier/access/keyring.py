"""The keys a process accepts: a snapshot of the active keys, refreshed from the database.

Checking a key must not cost a database round trip per request, so each process holds the
active keys (ids, roles, hashes; never secrets) and reloads them every ``refresh`` seconds.
A revoked key therefore stops working within that time everywhere. A key id the snapshot
does not know (a key made a moment ago) triggers a reload at most once a second, so that
new keys work at once and random ids cannot turn into a database load.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from twotier.access.keys import KeyRecord, KeyStore, Role, key_id_of, matches
from twotier.errors import InvalidKey, StoreUnavailable

log = logging.getLogger(__name__)

_UNKNOWN_ID_RELOAD = 1.0  # seconds between reloads caused by ids the snapshot lacks


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's public id and role."""

    key_id: str
    role: Role


class KeyRing:
    def __init__(self, store: KeyStore, *, refresh: float = 5.0) -> None:
        self.store = store
        self.refresh = refresh
        self._active: dict[str, KeyRecord] = {}
        self._loaded_at = -float("inf")
        self._ever_loaded = False
        self._lock = asyncio.Lock()

    async def authenticate(self, token: str) -> Principal:
        """The principal ``token`` stands for; InvalidKey if it is none."""
        key_id = key_id_of(token)
        if key_id is None:
            raise InvalidKey("malformed API key")
        age = time.monotonic() - self._loaded_at
        if age > self.refresh or (key_id not in self._active and age > _UNKNOWN_ID_RELOAD):
            await self.reload()
        record = self._active.get(key_id)
        if record is None or not matches(token, record):
            raise InvalidKey("unknown or revoked API key")
        return Principal(record.id, record.role)

    async def reload(self, *, force: bool = False) -> None:
        """Take a new snapshot. With the database down, keep the last one (and say so);
        with none yet, StoreUnavailable: no key can be checked. Without ``force``, a
        snapshot taken a moment ago (by a concurrent request) is kept."""
        async with self._lock:
            fresh = time.monotonic() - self._loaded_at < min(self.refresh, _UNKNOWN_ID_RELOAD)
            if fresh and not force:
                return  # another request reloaded while this one waited
            try:
                keys = await self.store.list_keys()
            except StoreUnavailable as error:
                if not self._ever_loaded:
                    raise
                log.warning("cannot reload API keys, keeping the last ones: %s", error)
                self._loaded_at = time.monotonic()
                return
            self._active = {key.id: key for key in keys if key.active}
            self._loaded_at = time.monotonic()
            self._ever_loaded = True

    async def has_role(self, role: Role) -> bool:
        """Whether some active key allows ``role`` (the start-up hint reads it)."""
        await self.reload()
        return any(key.role.allows(role) for key in self._active.values())
