"""API keys as the tiers keep them: the roles a key carries, a stored key's record, and
the port of the store that keeps them. The store implements the port and the access layer
uses it; neither imports the other (``access.keys``: what a key looks like, its hash)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class Role(StrEnum):
    """What a key may do; each role includes the ones before it."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANKS = {Role.READ: 1, Role.WRITE: 2, Role.ADMIN: 3}


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored key: never its secret, only the secret's hash."""

    id: str
    name: str
    role: Role
    secret_hash: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class KeyStore(Protocol):
    """Where keys live: the database, next to the data they guard."""

    async def add_key(self, record: KeyRecord) -> None: ...

    async def list_keys(self) -> list[KeyRecord]: ...

    async def revoke_key(self, key_id: str, when: datetime) -> bool:
        """Mark the key revoked; False if there is no such key (or it was revoked)."""
