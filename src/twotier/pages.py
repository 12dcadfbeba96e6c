"""Where the next page of an ordered list starts: an opaque, signed cursor.

A page in an order of its own (``Query.ordered``) continues after its last row's values of
the order's fields and its key. The cursor carries them, and a digest of the query they
belong to, signed (HMAC-SHA256) with a key derived from the database's identity: every
process and instance serving one database reads the others' cursors, a client cannot change
one unnoticed, and a cursor from another query (other filters, conditions or order) is
refused. The page size may change from page to page, as by key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from twotier.errors import BadCursor
from twotier.resources import Record, Resource, to_json
from twotier.store.base import Query

_SIGNATURE_BYTES = 16
_DIGEST_BYTES = 8


def query_digest(query: Query) -> bytes:
    """What makes a page's sequence of rows: everything but where it starts and its size."""
    conditions = [(c.field, c.op, c.value) for c in query.conditions]
    canonical = repr((sorted(query.filters), sorted(conditions), query.order, query.descending))
    return hashlib.sha256(canonical.encode()).digest()[:_DIGEST_BYTES]


class Cursors:
    """Makes and reads one resource's cursors with one database's key."""

    def __init__(self, resource: Resource, database_id: str) -> None:
        self._resource = resource
        self._key = hashlib.sha256(b"twotier cursor\0" + database_id.encode()).digest()
        self._adapters: dict[str, TypeAdapter[Any]] = {}

    def after(self, query: Query, record: Record) -> str:
        """The cursor of the page after ``record`` (the last row of a page of ``query``)."""
        values = [record.values[name] for name in query.position_fields(self._resource.key_fields)]
        payload = query_digest(query) + to_json(values)
        signature = hmac.digest(self._key, payload, "sha256")[:_SIGNATURE_BYTES]
        return base64.urlsafe_b64encode(signature + payload).decode().rstrip("=")

    def position(self, query: Query, cursor: str) -> tuple[Any, ...]:
        """The position a cursor names in ``query``'s order: the last row's values of the
        order's fields, then its key's (BadCursor if it is not one of this query's)."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise BadCursor("not a cursor this server made (next_after)") from None
        signature, payload = raw[:_SIGNATURE_BYTES], raw[_SIGNATURE_BYTES:]
        wanted = hmac.digest(self._key, payload, "sha256")[:_SIGNATURE_BYTES]
        if not hmac.compare_digest(signature, wanted):
            raise BadCursor("not a cursor this server made (next_after)")
        if payload[:_DIGEST_BYTES] != query_digest(query):
            raise BadCursor(
                "a cursor of another query: pass next_after with the filters, conditions "
                "and order of the page it came from"
            )
        names = query.position_fields(self._resource.key_fields)
        values = orjson.loads(payload[_DIGEST_BYTES:])
        if not isinstance(values, list) or len(values) != len(names):
            raise BadCursor("not a cursor this server made (next_after)")
        return tuple(self._value(name, value) for name, value in zip(names, values, strict=True))

    def _value(self, name: str, value: Any) -> Any:
        adapter = self._adapters.get(name)
        if adapter is None:
            adapter = TypeAdapter(self._resource.field(name).query_type())
            self._adapters[name] = adapter
        try:
            return adapter.validate_python(value)
        except ValidationError:
            raise BadCursor("not a cursor this server made (next_after)") from None


def page_after(records: Sequence[Record], limit: int) -> Record | None:
    """The row a next page starts after: the page's last, if ``records`` (read with one
    more than ``limit``) tell there are more."""
    return records[limit - 1] if len(records) > limit else None
