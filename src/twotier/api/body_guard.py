"""A pure ASGI middleware that checks request bodies before any route reads them.

Bodies must be JSON (else 415), at most ``max_bytes`` long (else 413), whether the client
sends a Content-Length or streams chunks, and well-formed (else 400). The parsed value is
left in the scope (``PARSED_BODY``) for the hot path, so a batch is parsed once.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twotier.api.responses import send_error

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

#: The scope key holding the request's body as parsed JSON (absent for an empty body).
PARSED_BODY = "twotier.body"


def is_json_media_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class BodyGuard:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            await send_error(send, 413, f"request body is larger than {self.max_bytes} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_error(send, 413, f"request body is larger than {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if size and not is_json_media_type(headers.get("content-type", "")):
            await send_error(
                send, 415, "the request body must be JSON (Content-Type: application/json)"
            )
            return
        body = b"".join(chunks)
        if size:
            try:
                scope[PARSED_BODY] = orjson.loads(body)
            except orjson.JSONDecodeError as error:
                await send_error(send, 400, f"malformed JSON body: {error}")
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
