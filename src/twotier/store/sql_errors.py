"""Database errors, sorted: "the database is not there right now" (StoreUnavailable, 503)
as opposed to a bug, said in one line without the SQL or the values."""

from __future__ import annotations

import asyncio
import re
import ssl
import sys
from typing import Any

from twotier.errors import ConstraintViolated, DuplicateKey, WriteUnsupported

_NETWORK = (TimeoutError, ConnectionError, OSError)


def unavailable(*also: type[BaseException]) -> tuple[type[BaseException], ...]:
    """The errors that mean "the database is not there right now", as opposed to a bug
    (with ``also``): the network's, and SQLAlchemy's once it is loaded (none of its errors
    can be raised before; a process serving from the drivers alone never loads it)."""
    exc = sys.modules.get("sqlalchemy.exc")
    if exc is None:
        return (*also, *_NETWORK)
    return (
        *also,
        exc.OperationalError,
        exc.InterfaceError,
        exc.TimeoutError,
        exc.DisconnectionError,
        *_NETWORK,
    )


def _integrity(error: BaseException) -> bool:
    """SQLAlchemy's IntegrityError, which wraps the drivers' own."""
    kind = type(error)
    return kind.__name__ == "IntegrityError" and kind.__module__.startswith("sqlalchemy")


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


def refusal(error: BaseException) -> DuplicateKey | ConstraintViolated | WriteUnsupported | None:
    """What an error of the database's own rules means to the tiers above: a taken key, or
    another rule broken (a foreign key, NOT NULL, a CHECK); None if it is neither. The
    drivers' errors, or SQLAlchemy's wrapping them."""
    original = getattr(error, "orig", None) or error
    code: tuple[Any, ...] = getattr(original, "args", None) or (None,)
    state = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    name = type(original).__name__
    if _integrity(error) and _is_duplicate_key(error):
        return DuplicateKey()
    if name == "IntegrityError" and code and code[0] == 1062:  # MySQL: ER_DUP_ENTRY
        return DuplicateKey()
    if state == "23505":  # PostgreSQL: unique_violation
        return DuplicateKey()
    if isinstance(state, str) and state.startswith("0A"):  # PostgreSQL: feature_not_supported
        said = str(original).splitlines()[0] if str(original) else name
        return WriteUnsupported(f"the database cannot take this write: {said[:200]}")
    broken = (
        _integrity(error)
        or (name == "IntegrityError" and bool(code) and isinstance(code[0], int))
        or (isinstance(state, str) and state.startswith("23"))
        # MySQL's CHECK (3819) and MariaDB's (4025) come as an OperationalError.
        or (bool(code) and code[0] in (3819, 4025))
    )
    if not broken:
        return None
    said = code[1] if len(code) > 1 and isinstance(code[1], str) else str(original)
    # The first line names the rule; PostgreSQL's DETAIL, with the values, is not in it.
    # MySQL's says the table and the rule's definition after it: its name will do.
    rule = said.splitlines()[0].split(" (`")[0] if said else name
    named = _CONSTRAINT.search(said)
    if named and named.group(1) not in rule:
        rule += f" (constraint {named.group(1)})"
    return ConstraintViolated(f"the database refused the write: {rule[:200]}")


_CONSTRAINT = re.compile(r"CONSTRAINT `([^`]+)`")


def _is_duplicate_key(error: BaseException) -> bool:
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
