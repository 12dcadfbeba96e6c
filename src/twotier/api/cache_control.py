"""``Cache-Control`` on a request: whether the client asked to skip the cache.

One parser for the hot path and the routes, so that both answer a request alike. Directive
names are case-insensitive (RFC 9111 §5.2) and a field may be sent on several lines, which
count as one comma-separated list (RFC 9110 §5.3).
"""

from __future__ import annotations

from collections.abc import Iterable

_BYPASS = frozenset({"no-cache", "no-store"})


def wants_cache(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """False if the request's ``Cache-Control`` says ``no-cache`` or ``no-store``."""
    for name, value in headers:
        if name != b"cache-control":
            continue
        for directive in value.decode("latin-1").split(","):
            if directive.split("=", 1)[0].strip().lower() in _BYPASS:
                return False
    return True
