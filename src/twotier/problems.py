"""The one table from a domain error to what a client is told: a status, a detail, headers.

Every entrypoint answers domain errors through it: the HTTP routes and hot path (as JSON
``{"detail"}``), the seed's batch protocol (as ``{"statusCode", "body": {"detail"}}``, over
HTTP and in Lambda).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from twotier.access.rules import Denied, retry_after
from twotier.policy import AnswerTooLarge
from twotier.service import UnknownResource
from twotier.store.base import (
    DuplicateKey,
    KeyNotUnique,
    StoreRefused,
    StoreUnavailable,
    VersionMismatch,
)

log = logging.getLogger("twotier.api.errors")

#: Seconds a client should wait before retrying after a 503.
RETRY_AFTER_SECONDS = "5"

#: The domain errors the table answers.
DOMAIN_ERRORS: tuple[type[Exception], ...] = (
    StoreUnavailable,
    DuplicateKey,
    KeyNotUnique,
    StoreRefused,
    VersionMismatch,
    UnknownResource,
    AnswerTooLarge,
    Denied,
)


@dataclass(frozen=True, slots=True)
class Problem:
    status: int
    detail: str
    headers: dict[str, str] = field(default_factory=dict)


def etag(version: int) -> str:
    """The row version as an entity tag: it grows with every write of the row."""
    return f'"{version}"'


def problem_of(error: Exception) -> Problem:
    """What to tell the client of a domain error (one of ``DOMAIN_ERRORS``)."""
    if isinstance(error, StoreUnavailable):
        log.warning("database unavailable: %s", error)
        return Problem(503, str(error), {"Retry-After": RETRY_AFTER_SECONDS})
    if isinstance(error, DuplicateKey):
        return Problem(409, "a row with this key exists already; nothing was written")
    if isinstance(error, KeyNotUnique):
        log.error("key not unique: %s", error)
        return Problem(409, f"{error}; nothing was written")
    if isinstance(error, StoreRefused):
        return Problem(400, f"{error}; nothing was written")
    if isinstance(error, VersionMismatch):
        if error.current:
            detail = f"the row is at version {etag(error.current)} now, not the one If-Match names"
            return Problem(412, detail, {"ETag": etag(error.current)})
        return Problem(412, "If-Match names a row that is not there")
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
    raise TypeError(f"not a domain error: {error!r}")
