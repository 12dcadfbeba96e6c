"""The persistent tier's port: what every store adapter (SQL, DynamoDB) provides."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from twotier.access.keys import KeyStore
from twotier.dataset import Row
from twotier.heroes import HeroIn, HeroRecord


class StoreUnavailable(Exception):
    """The database cannot be reached or did not answer in time; nothing was written."""


@dataclass(frozen=True, slots=True)
class HeroQuery:
    """A page of heroes: exact-match ``filters``, ids greater than ``after``, by id."""

    filters: tuple[tuple[str, str | int], ...] = ()
    after: int = 0
    limit: int = 100

    def filter_value(self, field: str) -> str | int | None:
        return dict(self.filters).get(field)


class Store(KeyStore, Protocol):
    """Rows of the superhero table, and the API keys guarding them. Each write commits
    before it returns."""

    async def init_schema(self) -> None:
        """Create the database, table and indexes if they do not exist (idempotent)."""

    async def get(self, hero_id: int) -> HeroRecord | None: ...

    async def get_many(self, hero_ids: Sequence[int]) -> dict[int, HeroRecord]:
        """The rows that exist among ``hero_ids``, by id."""

    async def find(self, query: HeroQuery) -> list[HeroRecord]: ...

    async def by_xp(
        self, xps: Sequence[int], limit: int | None = None
    ) -> dict[int, list[HeroRecord]]:
        """Every row with each of the ``xps`` values, by id within one value; with
        ``limit``, the first ``limit`` rows in (xp, id) order: a value past them is left
        empty, the last one reached may be cut short."""

    async def create_many(self, heroes: Sequence[HeroIn]) -> list[HeroRecord]:
        """Insert every row in one transaction (all or nothing), born with a version from
        ``versions.birth_version``; return them with their ids and versions."""

    async def create(self, hero: HeroIn) -> HeroRecord: ...

    async def bulk_load(
        self,
        rows: Iterable[tuple[Row, str]],
        *,
        replace: bool,
        keep: Callable[[], bool],
    ) -> int:
        """Load (id, ...) rows through the bulk path in one transaction; ``keep()`` False
        rolls it all back. Existing ids are replaced; loaded rows are born with a version
        from ``versions.birth_version``."""

    async def update(
        self, hero_id: int, changes: Mapping[str, Any]
    ) -> tuple[HeroRecord, HeroRecord] | None:
        """Apply ``changes`` and bump the version; return (before, after), or None if absent."""

    async def delete(self, hero_id: int) -> HeroRecord | None:
        """Remove the row; return it as it was, or None if it was absent."""

    async def count(self) -> int: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""

    def pool_usage(self) -> dict[str, int]:
        """Connections of this process's pool by state (``in_use``, ``idle``)."""

    async def close(self) -> None: ...
