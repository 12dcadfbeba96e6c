"""Checks shared by the sample databases' tests: a served value against the stored one,
and a fingerprint of a whole database (to find it as it was)."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, inspect, text


def fingerprint(engine: Engine, kind: str) -> dict[str, Any]:
    """Every table's columns, indexes and triggers, and a digest of its rows in key order
    (every column, as the driver reads it); on PostgreSQL each table's replica identity and
    the publications too."""
    found: dict[str, Any] = {}
    with engine.connect() as conn:
        catalog = inspect(conn)
        for table in sorted(catalog.get_table_names()):
            columns = [c["name"] for c in catalog.get_columns(table)]
            quote = conn.dialect.identifier_preparer.quote
            rows = conn.execute(
                text(
                    f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(table)} "
                    f"ORDER BY {', '.join(str(i + 1) for i in range(len(columns)))}"
                )
            ).all()
            digest = hashlib.sha256(repr([tuple(row) for row in rows]).encode()).hexdigest()
            indexes = sorted(str(i["name"]) for i in catalog.get_indexes(table))
            found[table] = (columns, indexes, len(rows), digest)
        if kind == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        elif kind == "mysql":
            query = (
                "SELECT trigger_name FROM information_schema.triggers "
                "WHERE trigger_schema = DATABASE()"
            )
        else:
            query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
        found["triggers"] = sorted(conn.execute(text(query)).scalars())
        if kind == "postgres":
            found["identities"] = conn.execute(
                text(
                    "SELECT relname, relreplident FROM pg_class WHERE relkind = 'r' "
                    "AND relnamespace = CAST(current_schema() AS regnamespace) ORDER BY 1"
                )
            ).all()
            found["publications"] = conn.execute(text("SELECT pubname FROM pg_publication")).all()
            found["functions"] = conn.execute(
                text("SELECT proname FROM pg_proc WHERE proname LIKE 'twotier%'")
            ).all()
    return found


def same(served: Any, stored: Any) -> bool:
    """A served value is the stored one (a date-time as RFC 3339 in UTC; SQLite's as the
    text it keeps)."""
    if isinstance(stored, bytes | memoryview) and isinstance(served, str):
        return base64.b64decode(served) == bytes(stored)
    if isinstance(stored, date) and not isinstance(stored, datetime):
        return bool(served == stored.isoformat())
    if isinstance(stored, Decimal | float) and isinstance(served, str):
        # An exact decimal, as text with the column's digits (SQLite's driver reads a
        # NUMERIC as a double).
        return Decimal(served) == Decimal(repr(stored) if isinstance(stored, float) else stored)
    if isinstance(stored, str) and stored != served:
        try:
            stored = datetime.fromisoformat(stored)
        except ValueError:
            return False
    if isinstance(stored, datetime):
        answered = datetime.fromisoformat(served)
        if answered.tzinfo is None:  # a local date-time: as stored, no zone added
            return answered == stored.replace(tzinfo=None) and stored.tzinfo is None
        moment = stored if stored.tzinfo else stored.replace(tzinfo=UTC)
        return answered == moment
    return bool(served == stored)
