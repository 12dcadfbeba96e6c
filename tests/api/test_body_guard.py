"""The body guard reads a body whole, and no further: the ASGI messages as servers send
them (granian: the body with ``more_body``, then an empty last message)."""

from __future__ import annotations

import asyncio

import orjson
from starlette.types import Message, Receive, Scope, Send

from twotier.api.body_guard import PARSED_BODY, BodyGuard

BODY = b'{"xp": 5}'


def scope_of(headers: list[tuple[bytes, bytes]]) -> Scope:
    return {"type": "http", "method": "PATCH", "path": "/heroes/1", "headers": headers}


class Inner:
    """The app behind the guard: answers 200 with what the guard parsed and what it then
    reads of the body itself (the replay)."""

    def __init__(self) -> None:
        self.parsed: object = None
        self.replayed: Message | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.parsed = scope.get(PARSED_BODY)
        self.replayed = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def serve(
    headers: list[tuple[bytes, bytes]], messages: list[Message]
) -> tuple[Inner, list[Message], int]:
    """Call the guard with ``messages`` to receive, then a receive that never returns (a
    client still connected); the inner app, what was sent, and how many receives."""
    inner = Inner()
    guard = BodyGuard(inner, max_bytes=1024, deadline=1.0)
    sent: list[Message] = []
    calls = 0

    async def receive() -> Message:
        nonlocal calls
        calls += 1
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    await guard(scope_of(headers), receive, send)
    return inner, sent, calls


async def test_a_body_of_its_declared_length_is_whole_without_the_last_message() -> None:
    # Waiting for granian's empty last message costs a turn of the event loop per write.
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    messages: list[Message] = [
        {"type": "http.request", "body": BODY, "more_body": True},
        {"type": "http.request", "body": b"", "more_body": False},
    ]
    inner, sent, calls = await serve(headers, messages)
    assert sent[0]["status"] == 200
    assert calls == 1
    assert inner.parsed == orjson.loads(BODY)
    assert inner.replayed == {"type": "http.request", "body": BODY, "more_body": False}


async def test_a_body_in_parts_is_read_to_its_declared_length() -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    messages: list[Message] = [
        {"type": "http.request", "body": BODY[:4], "more_body": True},
        {"type": "http.request", "body": BODY[4:], "more_body": True},
    ]
    inner, sent, calls = await serve(headers, messages)
    assert (sent[0]["status"], calls, inner.parsed) == (200, 2, orjson.loads(BODY))


async def test_a_body_without_a_length_is_read_to_its_last_message() -> None:
    # Chunked: only the last message says the body is whole.
    headers = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    messages: list[Message] = [
        {"type": "http.request", "body": BODY, "more_body": True},
        {"type": "http.request", "body": b"", "more_body": False},
    ]
    inner, sent, calls = await serve(headers, messages)
    assert (sent[0]["status"], calls, inner.parsed) == (200, 2, orjson.loads(BODY))


async def test_a_chunked_body_beside_a_length_is_read_to_its_last_message() -> None:
    # Transfer-Encoding overrides Content-Length: a first chunk of that length is not the
    # whole body.
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"9"),
        (b"transfer-encoding", b"chunked"),
    ]
    messages: list[Message] = [
        {"type": "http.request", "body": b'{"xp": 5,', "more_body": True},
        {"type": "http.request", "body": b' "color": "red"}', "more_body": False},
    ]
    inner, sent, calls = await serve(headers, messages)
    assert (sent[0]["status"], calls) == (200, 2)
    assert inner.parsed == {"xp": 5, "color": "red"}


async def test_a_body_short_of_its_declared_length_waits_for_the_rest() -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"100")]
    messages: list[Message] = [{"type": "http.request", "body": BODY, "more_body": True}]
    inner, sent, calls = await serve(headers, messages)
    assert (sent[0]["status"], calls, inner.parsed) == (408, 2, None)


async def test_a_body_counts_against_the_budget_at_its_parsed_size() -> None:
    """A 100 KB array of small numbers is some 2 MB once parsed: held at that, not at its
    bytes, and refused when the budget cannot take it."""
    body = b"[" + b"1," * 50_000 + b"1]"
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    for budget, status in ((1024 * 1024, 503), (16 * 1024 * 1024, 200)):
        guard = BodyGuard(Inner(), max_bytes=1024 * 1024, deadline=1.0, budget=budget)
        sent = await _posted(guard, headers, body)
        assert sent[0]["status"] == status
        assert guard.held == 0  # all given back when the request ends


async def _posted(
    guard: BodyGuard, headers: list[tuple[bytes, bytes]], body: bytes
) -> list[Message]:
    sent: list[Message] = []
    messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await guard(
        {"type": "http", "method": "POST", "path": "/batch", "headers": headers}, receive, send
    )
    return sent
