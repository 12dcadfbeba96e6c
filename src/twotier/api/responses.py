"""Responses shared by the FastAPI routes and the hot path, so both answer alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.responses import JSONResponse, Response
from starlette.types import Send

from twotier.api.conditional import Tags
from twotier.policy import Outcome, Served
from twotier.problems import RETRY_AFTER_SECONDS, etag
from twotier.resources import Key, Record, Resource

JSON = "application/json"

#: What a 401 says about how to authenticate (RFC 9110 asks every 401 for one).
CHALLENGE = 'Bearer realm="twotier", header="X-API-Key"'


def error_response(status: int, detail: Any, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def not_found(resource: Resource, key: Key) -> str:
    """``hero 7 not found``."""
    return f"{resource.singular} {key} not found"


def read_response(
    served: Served, resource: Resource, key: Key, unless: Tags | None = None
) -> Response:
    """A read of one row: its JSON, a 404, or a 304 when the client holds that version
    (``If-None-Match``); how it was served in ``X-Cache``, and its version in ``ETag`` (a
    404 carries one too when it is a deletion's tombstone)."""
    headers = {"X-Cache": served.outcome.value}
    if served.version:
        headers["ETag"] = etag(served.version)
    if served.body is None:
        return JSONResponse({"detail": not_found(resource, key)}, 404, headers)
    if unless is not None and unless.matches(served.version):
        return Response(status_code=304, headers=headers)
    return Response(served.body, 200, headers, media_type=JSON)


def row_response(record: Record, status: int = 200, location: str | None = None) -> Response:
    """A row a write answers with (200, or 201 with its ``Location``), and its ``ETag``."""
    headers = {"ETag": etag(record.version)}
    if location is not None:
        headers["Location"] = location
    return Response(record.to_json(), status, headers, media_type=JSON)


def batch_response(status: int, body: bytes, outcome: Outcome | None) -> Response:
    """A seed batch answer: the event's statusCode as the HTTP status, ``X-Cache`` for a
    read, ``Retry-After`` when the database is down."""
    headers = {"X-Cache": outcome.value} if outcome else {}
    if status == 503:
        headers["Retry-After"] = RETRY_AFTER_SECONDS
    elif status == 429:
        headers["Retry-After"] = "1"
    elif status == 401:
        headers["WWW-Authenticate"] = CHALLENGE
    return Response(body, status, headers, media_type=JSON)


async def send_error(
    send: Send, status: int, detail: object, headers: Sequence[tuple[bytes, bytes]] = ()
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
