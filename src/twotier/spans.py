"""Where a value falls in a field's order, so that a write invalidates only the cached
pages it can change.

Each value of a field lists are ordered or compared by maps to a 32-bit *order key* that
never decreases as the value grows (``order_key``): numbers, dates and times by the bits of
a double (sign, exponent, then the top of the mantissa), text by its first four UTF-8
bytes (the byte order lists use). The keys form a tree of ``LEVELS`` levels, sixteen
children a node: a node at level ``l`` holds the keys that agree above their lowest
``4 * l`` bits, and the root (level ``LEVELS``) holds them all.

A write moves every node its row's old and new values fall in (``ancestors``: one a level,
nine in all). A page is filed under the few nodes of one level that hold its whole range
(``cover``): any write that can change the page falls inside its range, so it moves one of
them; a write well outside it moves none, and the page stays cached. A range open on one
side reaches the end of the keys, so its cover is coarse on that side.
"""

from __future__ import annotations

import struct
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

#: Bits of an order key.
BITS = 32
#: Bits a level of the tree takes: each node has 2**LEVEL_BITS children.
LEVEL_BITS = 4
#: Levels below the root; the root is level ``LEVELS``.
LEVELS = BITS // LEVEL_BITS
#: The most nodes a page's range is covered by (more would cost each hit a lookup more).
MOST_NODES = 4

_TOP = (1 << BITS) - 1
_SIGN = 1 << 63
_ALL = (1 << 64) - 1
_DOUBLE = struct.Struct(">d")
_BITS64 = struct.Struct(">Q")

#: A node: (level, the order keys' bits above that level's).
Node = tuple[int, int]
ROOT: Node = (LEVELS, 0)


def _number_key(number: float) -> int:
    """A double's bits, made to sort as the numbers do (negatives turned over), cut to the
    top ``BITS``."""
    bits: int = _BITS64.unpack(_DOUBLE.pack(number + 0.0))[0]  # -0.0 is 0.0 to every database
    bits = (~bits & _ALL) if bits & _SIGN else (bits | _SIGN)
    return bits >> (64 - BITS)


_EPOCH = datetime(1970, 1, 1)


def order_key(value: Any) -> int | None:
    """The order key of a field's value, or None for a value of no known order (then only
    the root holds it)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float | Decimal):
        return _number_key(float(value))
    if isinstance(value, str):
        return int.from_bytes(value.encode()[:4].ljust(4, b"\0"))
    if isinstance(value, datetime):
        # A field is either always with an offset or always without one.
        offset = value.utcoffset()
        moment = value.replace(tzinfo=None) - offset if offset is not None else value
        return _number_key((moment - _EPOCH).total_seconds())
    if isinstance(value, date):
        return _number_key(float(value.toordinal()))
    if isinstance(value, time):
        seconds = value.hour * 3600 + value.minute * 60 + value.second
        return _number_key(seconds + value.microsecond / 1e6)
    return None


def prefix_keys(prefix: str) -> tuple[int, int]:
    """The lowest and highest order keys of the texts that start with ``prefix``."""
    head = prefix.encode()[:4]
    return int.from_bytes(head.ljust(4, b"\0")), int.from_bytes(head.ljust(4, b"\xff"))


def ancestors(key: int) -> list[Node]:
    """The nodes that hold ``key``, one a level, from its leaf to the root."""
    return [(level, key >> (LEVEL_BITS * level)) for level in range(LEVELS + 1)]


def cover(low: int, high: int) -> list[Node]:
    """The nodes of the lowest level at which at most ``MOST_NODES`` of them hold every key
    from ``low`` to ``high`` (both included)."""
    for level in range(LEVELS + 1):
        shift = LEVEL_BITS * level
        first, last = low >> shift, high >> shift
        if last - first < MOST_NODES:
            return [(level, node) for node in range(first, last + 1)]
    return [ROOT]  # pragma: no cover: the root's level always fits


FULL = (0, _TOP)


class Nodes:
    """The names of one field's nodes: ``tag``, the level, the node's bits in hex."""

    def __init__(self, tag: str) -> None:
        self._levels = [(f"{tag}:{level}:", LEVEL_BITS * level) for level in range(LEVELS + 1)]
        self.root = self.name(ROOT)

    def name(self, node: Node) -> str:
        level, bits = node
        return f"{self._levels[level][0]}{bits:x}"

    def ancestors(self, key: int) -> list[str]:
        """``ancestors``' names (a write names nine a value: written out, a third faster)."""
        return [f"{prefix}{key >> shift:x}" for prefix, shift in self._levels]

    def cover(self, low: int, high: int) -> tuple[str, ...]:
        return tuple(self.name(node) for node in cover(low, high))
