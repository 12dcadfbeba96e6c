"""Conditional requests (RFC 9110 §13): a row's version is its entity tag.

``If-None-Match`` on a read answers 304 when the client already holds the version the cache
(or the database) has; ``If-Match`` on a write makes it happen only from the version the
client read, checked inside the write's transaction (no lost update between two clients).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tags:
    """An ``If-Match`` / ``If-None-Match`` field: any current row (``*``), or versions."""

    any: bool = False
    versions: frozenset[int] = frozenset()

    def matches(self, version: int) -> bool:
        """Whether a row at ``version`` (0: none) matches (weak comparison: W/ ignored)."""
        if version <= 0:
            return False
        return self.any or version in self.versions


def tags(lines: Iterable[bytes] | None) -> Tags | None:
    """The entity tags of a header's lines (every line of it), None if it is absent. A tag
    that is not one of twotier's (not a quoted version) matches no row."""
    found: Tags | None = None
    for value in lines or ():
        found = found or Tags()
        for item in value.decode("latin-1").split(","):
            item = item.strip()
            if item == "*":
                found = Tags(True, found.versions)
                continue
            item = item.removeprefix("W/")
            digits = item[1:-1] if len(item) >= 2 and item[0] == item[-1] == '"' else ""
            if digits.isascii() and digits.isdigit() and len(digits) <= 19:
                found = Tags(found.any, found.versions | {int(digits)})
    return found
