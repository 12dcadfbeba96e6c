"""The one table from an error to what it tells: a client (a status, a detail, headers)
and an operator (the CLI's exit code).

Every entrypoint answers errors through it: the HTTP endpoints (as JSON ``{"detail"}``), the
seed's batch protocol (as ``{"statusCode", "body": {"detail"}}``, over HTTP and in Lambda),
and the CLI (the detail on one line, then its exit code: 1 for a fault worth retrying, 2 for
a setting or a declaration to change).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from twotier.access.rules import retry_after
from twotier.errors import (
    AccessError,
    AnswerTooLarge,
    BadCursor,
    CacheUnavailable,
    ChangeLogUnavailable,
    ConstraintViolated,
    Denied,
    DuplicateKey,
    FollowRefused,
    InvalidKey,
    KeyNotUnique,
    PositionLost,
    ResourceError,
    SchemaMismatch,
    StoreRefused,
    StoreUnavailable,
    TwotierError,
    UnknownResource,
    VersionMismatch,
    WriteUnsupported,
)

log = logging.getLogger("twotier.api.errors")

#: Seconds a client should wait before retrying after a 503.
RETRY_AFTER_SECONDS = "5"

#: The errors the table answers: every one twotier raises on purpose.
DOMAIN_ERRORS: tuple[type[Exception], ...] = (TwotierError,)


@dataclass(frozen=True, slots=True)
class Problem:
    status: int
    detail: str
    headers: dict[str, str] = field(default_factory=dict)
    #: What the CLI exits with: 1, a fault worth retrying; 2, something to change first.
    exit_code: int = 1


def etag_bytes(version: int) -> bytes:
    """The row version as an entity tag, as a header carries it: it grows with every write
    of the row."""
    return b'"%d"' % version


def etag(version: int) -> str:
    """The row version as an entity tag, as text."""
    return etag_bytes(version).decode()


def problem_of(error: Exception) -> Problem:
    """What to tell of an error twotier raised (a ``TwotierError``)."""
    if isinstance(error, StoreUnavailable):
        log.warning("database unavailable: %s", error)
        return Problem(503, str(error), {"Retry-After": RETRY_AFTER_SECONDS})
    if isinstance(error, DuplicateKey):
        return Problem(409, "a row with this key exists already; nothing was written")
    if isinstance(error, ConstraintViolated):
        return Problem(409, f"{error}; nothing was written")
    if isinstance(error, WriteUnsupported):
        log.error("write unsupported: %s", error)
        return Problem(501, f"{error}; nothing was written")
    if isinstance(error, KeyNotUnique):
        log.error("key not unique: %s", error)
        return Problem(409, f"{error}; nothing was written")
    if isinstance(error, StoreRefused):
        return Problem(400, f"{error}; nothing was written", exit_code=2)
    if isinstance(error, VersionMismatch):
        if error.current:
            detail = f"the row is at version {etag(error.current)} now, not the one If-Match names"
            return Problem(412, detail, {"ETag": etag(error.current)})
        return Problem(412, "If-Match names a row that is not there")
    if isinstance(error, SchemaMismatch | ResourceError | FollowRefused):
        return Problem(500, str(error), exit_code=2)  # a setting to change: never a request's
    if isinstance(error, BadCursor):
        return Problem(422, str(error))
    if isinstance(error, UnknownResource):
        return Problem(404, f"no resource {error}")
    if isinstance(error, AnswerTooLarge):
        setting = "BATCH_MAX_ROWS" if error.what == "rows" else "BATCH_MAX_ANSWER_BYTES"
        return Problem(
            400,
            f"{error} (TWOTIER_{setting}): ask for fewer values in SQLS per request, "
            "or repeat a value fewer times",
        )
    if isinstance(error, Denied):
        if error.retry_after is not None:
            wait = retry_after(error.retry_after)
            return Problem(error.status, error.detail, {"Retry-After": wait})
        return Problem(error.status, error.detail)
    if isinstance(error, InvalidKey | AccessError):
        return Problem(401, f"invalid API key: {error}")
    if isinstance(error, CacheUnavailable | ChangeLogUnavailable | PositionLost):
        return Problem(503, str(error), {"Retry-After": RETRY_AFTER_SECONDS})
    if isinstance(error, TwotierError):
        return Problem(500, str(error))
    raise TypeError(f"not an error of twotier's: {error!r}")
