"""Database errors, sorted: "the database is not there right now" (StoreUnavailable, 503)
as opposed to a bug, said in one line without the SQL or the values."""

from __future__ import annotations

import asyncio
import ssl

from sqlalchemy import exc

# Errors that mean "the database is not there right now", as opposed to a bug.
UNAVAILABLE = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.TimeoutError,
    exc.DisconnectionError,
    TimeoutError,
    ConnectionError,
    OSError,
)


def describe(error: BaseException) -> str:
    """A one-line reason without the SQL or parameters (they may hold user data)."""
    original = getattr(error, "orig", None) or error
    if isinstance(original, asyncio.TimeoutError | TimeoutError):
        return "database timed out"
    tls = _tls_failure(error)
    if tls is not None:  # drivers bury it under "can't connect": say what it was
        verify = getattr(tls, "verify_message", None)
        detail = f"certificate verify failed: {verify}" if verify else str(tls)
        return f"database unavailable: TLS handshake failed: {detail}"[:300]
    reason = str(original).splitlines()[0] if str(original) else type(original).__name__
    return f"database unavailable: {reason[:200]}"


def _tls_failure(error: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return None


def is_duplicate_key(error: exc.IntegrityError) -> bool:
    """Whether an insert failed because its primary key is taken (not another constraint)."""
    original = getattr(error, "orig", None)
    code = getattr(original, "args", (None,))[0] if original is not None else None
    if code == 1062:  # MySQL / MariaDB: ER_DUP_ENTRY
        return True
    if getattr(original, "sqlstate", None) == "23505" or getattr(original, "pgcode", None) == (
        "23505"
    ):  # PostgreSQL: unique_violation
        return True
    message = str(original or error)
    return "UNIQUE constraint failed" in message or "duplicate key value" in message
