"""A request's headers, as twotier reads them: gathered in one pass, once per request.

Observe (request id, https, a key presented), the access guard (the key, the forwarded
address), the body guard (length, type, framing) and the endpoints (conditions, cache
wishes) each read a few headers. ``headers_of`` gathers every line of the ones any of them
reads on the first call and keeps them in the scope, so the others look them up instead of
walking the list again; a request with none of them (the common read) gets an empty map.
Names arrive lower-cased (ASGI); a field sent on several lines keeps every line, in order.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import Scope

#: Every request header twotier reads.
READ = frozenset(
    {
        b"x-request-id",
        b"x-forwarded-proto",
        b"x-forwarded-for",
        b"origin",
        b"x-api-key",
        b"authorization",
        b"cache-control",
        b"if-match",
        b"if-none-match",
        b"content-type",
        b"content-length",
        b"transfer-encoding",
    }
)

#: Where the gathered headers are kept in the scope.
_HEADERS = "twotier.headers"

Headers = Mapping[bytes, list[bytes]]


def headers_of(scope: Scope) -> Headers:
    """The lines of each header in ``READ`` the request carries (absent ones left out)."""
    found: dict[bytes, list[bytes]] | None = scope.get(_HEADERS)
    if found is None:
        found = {}
        for name, value in scope["headers"]:
            if name in READ:
                lines = found.get(name)
                if lines is None:
                    found[name] = [value]
                else:
                    lines.append(value)
        scope[_HEADERS] = found
    return found


def last(headers: Headers, name: bytes) -> str | None:
    """The last line of a field that holds one value (a later line replaces an earlier)."""
    lines = headers.get(name)
    return lines[-1].decode("latin-1") if lines else None


def presented_key(headers: Headers) -> str | None:
    """The key sent in X-API-Key, else as a bearer token; an empty header is no key."""
    for value in headers.get(b"x-api-key", ()):
        return value.decode("latin-1").strip() or None
    for value in headers.get(b"authorization", ()):
        if value[:7].lower() == b"bearer ":
            return value[7:].decode("latin-1").strip() or None
    return None


def presents_key(headers: Headers) -> bool:
    """Whether the request presents any key (the answer is then that key's alone)."""
    return any(headers.get(b"x-api-key", ())) or any(headers.get(b"authorization", ()))


_BYPASS = frozenset({"no-cache", "no-store"})


def wants_cache(headers: Headers) -> bool:
    """False if ``Cache-Control`` says ``no-cache`` or ``no-store``. Directive names are
    case-insensitive (RFC 9111 §5.2); the lines of a field are one list (RFC 9110 §5.3)."""
    for value in headers.get(b"cache-control", ()):
        for directive in value.decode("latin-1").split(","):
            if directive.split("=", 1)[0].strip().lower() in _BYPASS:
                return False
    return True


def forwarded_for(headers: Headers) -> list[str]:
    """Every X-Forwarded-For entry, every line read in order as one list (RFC 9110 §5.3)."""
    return [
        entry.strip()
        for value in headers.get(b"x-forwarded-for", ())
        for entry in value.decode("latin-1").split(",")
        if entry.strip()
    ]
