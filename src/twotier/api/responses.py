"""The one response builder of the resource endpoints: every answer is an ``Answer``.

An answer is its status, its headers as ASGI sends them and its body: one format of ETag
(``problems.etag_bytes``), one way to say how a read was served (``X-Cache``), a length always
given. It is an ASGI app of its own, so an endpoint, a guard or the error table hands back
the same kind of thing. FastAPI's own routes (docs, admin, health) answer with Starlette's
responses; the error bodies (``{"detail": …}``) are alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from twotier.api.conditional import Tags
from twotier.policy import Outcome, Served
from twotier.problems import RETRY_AFTER_SECONDS, Problem, etag_bytes, problem_of
from twotier.resources import Key, Record, Resource

JSON = "application/json"
_JSON = (b"content-type", JSON.encode())

#: What a 401 says about how to authenticate (RFC 9110 asks every 401 for one).
CHALLENGE = 'Bearer realm="twotier", header="X-API-Key"'

#: ``X-Cache`` by outcome, and a hit's on its own (an enumeration member's hash is a call).
_OUTCOMES = {outcome: (b"x-cache", outcome.value.encode()) for outcome in Outcome}
_HIT = _OUTCOMES[Outcome.HIT]

Header = tuple[bytes, bytes]


class Answer:
    """A response: sent as two ASGI messages."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: list[Header]) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


def answer(
    status: int,
    body: bytes = b"",
    *,
    version: int = 0,
    outcome: Outcome | None = None,
    more: Iterable[Header] = (),
) -> Answer:
    """An answer with a JSON body (none for 204 and 304), ``X-Cache`` for a read, the row's
    version as its ``ETag``."""
    headers: list[Header] = []
    if outcome is not None:
        headers.append(_OUTCOMES[outcome])
    if status != 204 and status != 304:
        headers.append((b"content-length", b"%d" % len(body)))
        headers.append(_JSON)
    if version:
        headers.append((b"etag", etag_bytes(version)))
    headers.extend(more)
    return Answer(status, body, headers)


def found(body: bytes, version: int, cache: Header = _HIT) -> list[Header]:
    """The headers of a 200 with a row found, built at once (the hot read's, a hit unless
    ``cache`` says otherwise)."""
    headers = [cache, (b"content-length", b"%d" % len(body)), _JSON]
    if version:
        headers.append((b"etag", etag_bytes(version)))
    return headers


def error(status: int, detail: Any, headers: Mapping[str, str] | Sequence[Header] = ()) -> Answer:
    """``{"detail": …}`` with ``status``."""
    more = (
        [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        if isinstance(headers, Mapping)
        else list(headers)
    )
    return answer(status, orjson.dumps({"detail": detail}), more=more)


def problem(error_: Exception) -> Answer:
    """The answer to a domain error, from the one table (``twotier.problems``)."""
    told: Problem = problem_of(error_)
    return error(told.status, told.detail, told.headers)


def not_found(resource: Resource, key: Key) -> str:
    """``hero 7 not found``."""
    return f"{resource.singular} {key} not found"


def read_answer(served: Served, resource: Resource, key: Key, unless: Tags | None = None) -> Answer:
    """A read of one row: its JSON, a 404, or a 304 when the client holds that version
    (``If-None-Match``); how it was served in ``X-Cache``, and its version in ``ETag`` (a
    404 carries one too when it is a deletion's tombstone)."""
    if served.body is None:
        body = orjson.dumps({"detail": not_found(resource, key)})
        return answer(404, body, version=served.version, outcome=served.outcome)
    if unless is not None and unless.matches(served.version):
        return answer(304, version=served.version, outcome=served.outcome)
    return Answer(200, served.body, found(served.body, served.version, _OUTCOMES[served.outcome]))


def row_answer(record: Record, status: int = 200, location: str | None = None) -> Answer:
    """A row a write answers with (200, or 201 with its ``Location``), and its ``ETag``."""
    more = [(b"location", location.encode())] if location is not None else []
    return answer(status, record.to_json(), version=record.version, more=more)


def batch_answer(status: int, body: bytes, outcome: Outcome | None) -> Answer:
    """A seed batch answer: the event's statusCode as the HTTP status, ``X-Cache`` for a
    read, ``Retry-After`` when the database is down or the caller is limited."""
    more: list[Header] = []
    if status == 503:
        more.append((b"retry-after", RETRY_AFTER_SECONDS.encode()))
    elif status == 429:
        more.append((b"retry-after", b"1"))
    elif status == 401:
        more.append((b"www-authenticate", CHALLENGE.encode()))
    return answer(status, body, outcome=outcome, more=more)


def error_response(status: int, detail: Any, headers: dict[str, str] | None = None) -> Response:
    """``{"detail": …}`` from one of FastAPI's own routes or handlers."""
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def send_error(
    send: Send, status: int, detail: object, headers: Sequence[Header] = ()
) -> None:
    """A JSON error from a guard, before the request's body was read: so the connection
    closes after it (what is left of the body is never read)."""
    refused = error(status, detail, [(b"connection", b"close"), *headers])
    await send({"type": "http.response.start", "status": status, "headers": refused.headers})
    await send({"type": "http.response.body", "body": refused.body})
