"""A pure ASGI middleware that checks request bodies before any route reads them.

Bodies must be JSON (else 415), at most ``max_bytes`` long (else 413), whether the client
sends a Content-Length or streams chunks, and well-formed (else 400). The parsed value is
left in the scope (``PARSED_BODY``) for the endpoints, so a body is parsed once; a body is
held against the process's budget at what it takes parsed (a bound counted on its bytes),
and a request may be turned away on its raw body before it is parsed (``screen``: a batch
that says it writes, from a caller who may not).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twotier.api.headers import Headers, headers_of, last
from twotier.api.responses import send_error
from twotier.problems import RETRY_AFTER_SECONDS

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

#: The scope key holding the request's body as parsed JSON (absent for an empty body).
PARSED_BODY = "twotier.body"


def is_json_media_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class BodyGuard:
    """Bodies are read here, whole, before anything else sees them; so this is where a
    client that sends slowly, or too much, is stopped:

    - past ``max_bytes`` (declared or streamed): 413;
    - not all there within ``deadline`` seconds of the request's start: 408 (a client that
      trickles a body cannot hold a connection and its buffer for long);
    - the bodies this process holds (being received, or being served) would pass
      ``budget`` bytes: 503 with Retry-After, so many slow or large bodies at once cannot
      exhaust memory.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        *,
        deadline: float = 10.0,
        budget: int = 64 * 1024 * 1024,
        screen: Screen | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.deadline = deadline
        self.budget = budget
        self.screen = screen
        self.held = 0  # bytes of the bodies held by requests under way in this process

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = headers_of(scope)
        declared = _declared_length(last(headers, b"content-length") or "")
        if declared is not None and declared > self.max_bytes:
            await send_error(send, 413, f"request body is larger than {self.max_bytes} bytes")
            return
        # The length that makes the body whole: a chunked body's says nothing (RFC 9112
        # §6.3: Transfer-Encoding overrides a Content-Length sent beside it).
        whole = None if b"transfer-encoding" in headers else declared
        chunks: list[bytes] = []
        size = 0  # received so far, and held against the budget until the request ends
        try:
            try:
                async with asyncio.timeout(self.deadline):
                    while True:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            return
                        chunk = message.get("body", b"")
                        if size + len(chunk) > self.max_bytes:
                            await send_error(
                                send, 413, f"request body is larger than {self.max_bytes} bytes"
                            )
                            return
                        if self.held + len(chunk) > self.budget:
                            await _over_budget(send)
                            return
                        self.held += len(chunk)
                        size += len(chunk)
                        chunks.append(chunk)
                        # A declared length, once received, is the whole body: granian
                        # sends it with more_body and then an empty last message, and each
                        # receive() is a turn of the event loop (profiled: 2 ms of a 10 ms
                        # PATCH under load). The server frames the body by that length, so
                        # nothing more can follow.
                        if not message.get("more_body", False) or size == whole:
                            break
            except TimeoutError:
                await send_error(
                    send, 408, f"the request body did not arrive within {self.deadline:g} s"
                )
                return
            await self._serve(scope, headers, chunks, size, receive, send)
        finally:
            # Given back when the request ends, not when the body is in: until then the
            # body (and what is made of it) is still in memory.
            self.held -= size

    async def _serve(
        self,
        scope: Scope,
        headers: Headers,
        chunks: list[bytes],
        size: int,
        receive: Receive,
        send: Send,
    ) -> None:
        if size and not is_json_media_type(last(headers, b"content-type") or ""):
            await send_error(
                send, 415, "the request body must be JSON (Content-Type: application/json)"
            )
            return
        body = b"".join(chunks)
        if size and self.screen is not None:
            refusal = self.screen(scope, body)
            if refusal is not None:  # turned away before the body is parsed
                await refusal(scope, receive, send)
                return
        # What the parsed body will hold, against the budget until the request ends: up to
        # thirty times its bytes for a body of small numbers or empty strings.
        extra = parsed_size(body) - size if size else 0
        if self.held + extra > self.budget:
            await _over_budget(send)
            return
        self.held += extra
        try:
            if size:
                try:
                    scope[PARSED_BODY] = orjson.loads(body)
                except orjson.JSONDecodeError as error:
                    await send_error(send, 400, f"malformed JSON body: {error}")
                    return
            await self._replayed(scope, body, receive, send)
        finally:
            self.held -= extra

    async def _replayed(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        """Serve the request, its body handed to the app as if received now."""
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


#: What each value of a parsed JSON body may take beyond its own bytes: an object in
#: CPython is 24 to 72 bytes and a list's slot 8 more, where its JSON can be 2 bytes.
_VALUE_OVERHEAD = 72


async def _over_budget(send: Send) -> None:
    await send_error(
        send,
        503,
        "too many request bodies are in flight; retry shortly",
        [(b"retry-after", RETRY_AFTER_SECONDS.encode())],
    )


def parsed_size(body: bytes) -> int:
    """A bound on the memory a JSON body takes once parsed, counted without parsing it: its
    bytes, and an object's overhead for each value (each comma, colon, bracket or brace
    starts at most one)."""
    values = body.count(b",") + body.count(b":") + body.count(b"[") + body.count(b"{") + 1
    return len(body) + _VALUE_OVERHEAD * values


#: A request that may be turned away on its raw body before it is parsed: the answer to
#: send instead, or None.
Screen = Callable[[Scope, bytes], ASGIApp | None]


def _declared_length(value: str) -> int | None:
    """A Content-Length as a number, if it is one (only ASCII digits are digits here)."""
    value = value.strip()
    if not (value.isascii() and value.isdigit()):
        return None
    return int(value) if len(value) <= 18 else 10**18  # no int() of thousands of digits
