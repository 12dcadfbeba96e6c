"""The persistent tier's port: what every store adapter (SQL, DynamoDB) provides.

A store holds the rows of every declared resource (``Rows``, one per resource) and the API
keys. Each write commits before it returns, and maintains the row's version: a row is born
with ``versions.birth_version()`` and every update adds one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from twotier.key_records import KeyStore
from twotier.resources import Key, Record, Resource
from twotier.resources.introspected import Introspected


@dataclass(frozen=True)
class FollowerUser:
    """The change-log follower's own database user: it may read the change log and the
    database's identity, nothing else (``Store.grant_follower``); on MySQL, only from
    ``host`` (a MySQL host pattern, or a network such as 10.0.0.0/16)."""

    name: str
    password: str = field(repr=False)
    host: str = "%"


@dataclass(frozen=True)
class SchemaChange:
    """One change to a database's schema: what it is, in a line for the operator, and the
    statements that make it (none where a store's changes are calls, not statements)."""

    line: str
    statements: tuple[str, ...] = ()


@dataclass(frozen=True)
class Detachment:
    """What ``Store.detach`` removes (or would), and what it leaves because it holds the
    user's data or twotier cannot tell it made it, one line each."""

    removed: list[SchemaChange]
    kept: list[str]


def new_id() -> str:
    """A database's identity, as ``init_schema`` writes it once: 64 random bits."""
    return secrets.token_hex(8)


#: The operators of a condition: comparisons, membership of a set, a prefix, a null test.
OPERATORS = ("gt", "gte", "lt", "lte", "in", "prefix", "null")


def prefix_bound(prefix: str) -> str | None:
    """The least text above every text that starts with ``prefix`` in code point order
    (UTF-8's byte order), or None if there is none (a prefix of U+10FFFF only)."""
    text = prefix
    while text:
        last = ord(text[-1]) + 1
        if last == 0xD800:  # the surrogates are no text
            last = 0xE000
        if last <= 0x10FFFF:
            return text[:-1] + chr(last)
        text = text[:-1]
    return None


@dataclass(frozen=True, slots=True)
class Condition:
    """One test of a field: ``op`` one of ``OPERATORS``; ``value`` the value compared with,
    a tuple of values (``in``), the text a value starts with (``prefix``), or whether the
    field is null (``null``)."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class Query:
    """A page of rows: exact-match ``filters`` and ``conditions``, in ``order`` (fields,
    the key the final tiebreak; none: by key alone), ``descending`` or not, after
    ``position`` (the last row's values of the order's fields, then its key) or, by key
    alone, after the key ``after`` (None: from the first); each row with ``fields``."""

    filters: tuple[tuple[str, Any], ...] = ()
    after: Key | None = None
    limit: int = 100
    conditions: tuple[Condition, ...] = ()
    order: tuple[str, ...] = ()
    descending: bool = False
    position: tuple[Any, ...] | None = None
    #: The fields each row of the answer carries (none named: every one).
    fields: tuple[str, ...] = ()

    def filter_value(self, field: str) -> Any:
        return dict(self.filters).get(field)

    @property
    def ordered(self) -> bool:
        """Whether the page is in an order other than by key, ascending (its cursor then
        names a position, not a key)."""
        return bool(self.order) or self.descending

    def with_limit(self, limit: int) -> Query:
        return replace(self, limit=limit)

    def position_fields(self, key_fields: Sequence[str]) -> tuple[str, ...]:
        """The fields a page is in the order of, and a cursor names the values of: the
        order's, then the key's (``key_fields``) not among them."""
        return (*self.order, *(name for name in key_fields if name not in self.order))


#: Rows for a bulk load: (field values in the resource's column order, the CSV line they
#: came from, which the MySQL path hands to the server as it is where it can).
LoadRows = Iterable[tuple[tuple[Any, ...], str]]


class Rows(Protocol):
    """One resource's rows in the database."""

    resource: Resource
    #: Seconds a lookup (or a page filtering on a lookup field) may answer from before a
    #: committed write: 0 where lookups read the table itself (SQL); DynamoDB's global
    #: secondary indexes are eventually consistent.
    lookup_lag: float
    #: Pages come in the order of their fields' values (SQL), not a scan's (DynamoDB): a
    #: page's range of values is then known, and the cache invalidates it only for writes
    #: within that range (``policy.CacheKeys``).
    pages_in_order: bool
    #: Most rows ``create_many`` writes in one transaction (None: no bound but the
    #: database's own); past it, StoreRefused.
    batch_limit: int | None

    async def get(self, key: Key) -> Record | None: ...

    async def get_many(self, keys: Sequence[Key]) -> dict[Key, Record]:
        """The rows that exist among ``keys``, by key."""

    async def find(self, query: Query) -> list[Record]: ...

    async def lookup(
        self, field: str, values: Sequence[Any], limit: int | None = None
    ) -> dict[Any, list[Record]]:
        """Every row with each of ``values`` in ``field``, by key within one value; with
        ``limit``, the first ``limit`` rows in (value, key) order: a value past them is
        left empty, the last one reached may be cut short."""

    async def create_many(self, rows: Sequence[Mapping[str, Any]]) -> list[Record]:
        """Insert every row in one transaction (all or nothing), born with a version from
        ``versions.birth_version``; return them with their keys. DuplicateKey if a given
        key is taken."""

    async def update(
        self, key: Key, changes: Mapping[str, Any], *, expected: frozenset[int] | None = None
    ) -> tuple[Record, Record] | None:
        """Apply ``changes`` and bump the version; (before, after), or None if absent.
        With ``expected``, only if the row is at one of those versions (else
        VersionMismatch; an absent row too), checked inside the write's transaction."""

    async def put(
        self, key: Key, values: Mapping[str, Any], *, expected: frozenset[int] | None = None
    ) -> tuple[Record | None, Record]:
        """Replace the row, or create it under ``key`` (a client-given key) if absent:
        (before or None, after). ``expected`` as for ``update`` (a missing row is at 0)."""

    async def delete(self, key: Key, *, expected: frozenset[int] | None = None) -> Record | None:
        """Remove the row; return it as it was, or None if it was absent. ``expected`` as
        for ``update``."""

    async def bulk_load(self, rows: LoadRows, *, replace: bool, keep: Callable[[], bool]) -> int:
        """Load rows through the bulk path in one transaction; ``keep()`` False rolls it
        all back. Existing keys are replaced; loaded rows are born with a version from
        ``versions.birth_version``."""

    async def count(self) -> int: ...


class Store(KeyStore, Protocol):
    """The database: every resource's rows, and the API keys guarding them."""

    def rows(self, resource: str) -> Rows:
        """The rows of the resource named ``resource``."""

    async def init_schema(
        self, *, dry_run: bool = False, if_changed: bool = False
    ) -> list[SchemaChange]:
        """Create the database, the tables and their indexes if they do not exist, and
        adopt existing tables (idempotent); what was done, each change with its statements,
        in order. SchemaMismatch,
        with every contradiction, if a declaration contradicts its table: then nothing is
        changed. ``dry_run``: what would be done, doing nothing (the database itself is
        still created if missing). ``if_changed``: nothing at all if the database records
        that this version of twotier made this same declaration there (a store may plan
        anyway)."""

    async def detach(self, *, dry_run: bool = False) -> Detachment:
        """Remove what ``init_schema`` and ``grant_follower`` added for twotier's own use
        (its row versions and their triggers, its own tables, the follower's publication,
        slots and user), leaving every row of the user's tables as it was; what was removed
        (``dry_run``: what would be, removing nothing). StoreRefused where it cannot."""

    async def introspect(self, tables: Sequence[str] | None = None) -> list[Introspected]:
        """Each table of the database (or each of ``tables``, matched as the database
        matches names) as a declaration would describe it, or why it is left out; changes
        nothing. StoreRefused for a table it does not have."""

    async def grant_follower(self, user: FollowerUser) -> None:
        """Make ``user`` (or bring it up to date: its password, its grants) with the
        follower's privileges and no others, and what the follower cannot make itself
        (PostgreSQL's publication); StoreRefused where the database has no such users."""

    async def identity(self) -> str:
        """The database's own id: random, written once by ``init_schema``. The cache keys
        carry it, so one cache namespace never serves one database's rows for another's
        (a database dropped and made again, another database behind the same Redis)."""

    async def learn(self) -> None:
        """What the store needs to know of the database before serving, asked once at
        start (which tables' rows the database rewrites as they are written)."""

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""

    def pool_usage(self) -> dict[str, int]:
        """Connections of this process's pool by state (``in_use``, ``idle``)."""

    async def close(self) -> None: ...
