"""Every error twotier raises on purpose: one root, a family per tier, defined here.

Every layer raises these and every entrypoint handles them, so no entrypoint imports an
adapter for its errors and no two adapters import each other for theirs. What each tells a
client (an HTTP status, the batch protocol's statusCode) and an operator (the CLI's exit
code) is said in one table: ``twotier.problems``.
"""

from __future__ import annotations

from collections.abc import Sequence

Key = int | str


class TwotierError(Exception):
    """The root of every error twotier raises on purpose."""


# -- the database ------------------------------------------------------------------------


class StoreError(TwotierError):
    """The database tier: nothing was written."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or did not answer in time; nothing was written."""


class DuplicateKey(StoreError):
    """A new row's key is already taken (a client-given key); nothing was written."""

    def __init__(self, key: Key | None = None) -> None:
        super().__init__("a row with this key exists" if key is None else f"key {key!r} exists")
        self.key = key


class KeyNotUnique(StoreError):
    """The table holds more than one row under a key: its key column is not (or no longer)
    unique, which ``init_schema`` refuses to serve. Found before a write changed anything,
    or its transaction was undone: nothing was written."""

    def __init__(self, table: str, key: Key) -> None:
        super().__init__(
            f"table {table} holds more than one row with the key {key!r}: its key column "
            "must be unique (its primary key, or a unique column)"
        )


class ConstraintViolated(StoreError):
    """The database refused a write that breaks one of the table's own rules (a foreign
    key, NOT NULL, a CHECK); nothing was written. The message names the rule, never the
    values."""


class WriteUnsupported(StoreError):
    """The database cannot take a write as twotier makes it, whatever its values (a
    PostgreSQL table whose rules rewrite an insert refuses ``INSERT … RETURNING``);
    nothing was written. The message says what the database said."""


class StoreRefused(StoreError):
    """A write this database cannot take as asked (more rows than one of its transactions
    holds, a value outside what it stores); nothing was written. The message says what
    to change."""


class SchemaMismatch(StoreError, ValueError):
    """Declarations the database's tables contradict: nothing was changed. ``problems`` holds
    every contradiction found, one line each, naming the table, the column and what to
    change."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


class VersionMismatch(StoreError):
    """A conditional write found the row at another version (or absent: ``current`` 0);
    nothing was written."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the row is at version {current}")
        self.current = current


# -- the cache ---------------------------------------------------------------------------


class CacheError(TwotierError):
    """The cache tier."""


class CacheUnavailable(CacheError):
    """The cache did not answer (down, slow or refused); callers fall back to the database."""


# -- who may ask -------------------------------------------------------------------------


class AccessError(TwotierError):
    """The caller, its key or its budget."""


class Denied(AccessError):
    """A request its caller may not make: 401 (no valid key), 403 (role too low), 429 (a
    budget spent: ``retry_after`` seconds)."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


class InvalidKey(AccessError):
    """A key was presented, and it is not an active key."""


# -- what was asked ----------------------------------------------------------------------


class RequestError(TwotierError):
    """A request that cannot be served as asked."""


class UnknownResource(RequestError, LookupError):
    """No declared resource has that name."""


class BadCursor(RequestError, ValueError):
    """A list's ``after`` that is not a cursor this database made for this query."""


class AnswerTooLarge(RequestError):
    """A batch read whose answer would pass a bound (``what``: rows or bytes); nothing of
    it was sent, and no more than about twice the row bound was read."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"the answer would hold more than {limit} {what}")
        self.what = what
        self.limit = limit


# -- declarations --------------------------------------------------------------------------


class ResourceError(TwotierError, ValueError):
    """A declaration twotier cannot serve; the message is one line naming where."""


# -- the change log ------------------------------------------------------------------------


class FollowError(TwotierError):
    """The change-log follower."""


class FollowRefused(FollowError):
    """The database cannot be followed as configured; the message says what to change."""


class ChangeLogUnavailable(FollowError):
    """The change log could not be read (server down, access refused); worth retrying."""


class PositionLost(FollowError):
    """The log no longer holds the position asked for (binlog purged, slot dropped): what
    happened since is unknown, so everything cached may be stale."""
