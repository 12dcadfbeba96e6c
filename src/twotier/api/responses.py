"""Responses shared by the FastAPI routes and the hot path, so both answer alike."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from starlette.responses import JSONResponse, Response
from starlette.types import Send

from twotier.policy import Outcome, Served

#: Seconds a client should wait before retrying after a 503.
RETRY_AFTER_SECONDS = "5"

JSON = "application/json"

#: What a 401 says about how to authenticate (RFC 9110 asks every 401 for one).
CHALLENGE = 'Bearer realm="twotier", header="X-API-Key"'


def etag(version: int) -> str:
    """The row version as an entity tag: it grows with every write of the row."""
    return f'"{version}"'


def hero_response(served: Served, hero_id: int) -> Response:
    """A read of one hero: its JSON, or a 404; how it was served in ``X-Cache``, and its
    version in ``ETag`` (a 404 carries one too when it is a deletion's tombstone)."""
    headers = {"X-Cache": served.outcome.value}
    if served.version:
        headers["ETag"] = etag(served.version)
    if served.body is None:
        return JSONResponse({"detail": f"hero {hero_id} not found"}, 404, headers)
    return Response(served.body, 200, headers, media_type=JSON)


def batch_response(status: int, body: bytes, outcome: Outcome | None) -> Response:
    """A seed batch answer: the event's statusCode as the HTTP status, ``X-Cache`` for a
    read, ``Retry-After`` when the database is down."""
    headers = {"X-Cache": outcome.value} if outcome else {}
    if status == 503:
        headers["Retry-After"] = RETRY_AFTER_SECONDS
    elif status == 401:
        headers["WWW-Authenticate"] = CHALLENGE
    return Response(body, status, headers, media_type=JSON)


async def send_error(
    send: Send, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """A JSON error from a middleware, before the request's body was read: so the
    connection closes after it (what is left of the body is never read)."""
    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
