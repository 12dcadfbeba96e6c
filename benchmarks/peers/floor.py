"""The floor: a raw ASGI app answering every request with one constant hero-sized body.

No framework, no cache, no database: what the server itself costs per request, the ceiling
no app on it can pass.
"""

from __future__ import annotations

from typing import Any

BODY = b'{"id":1,"name":"Bruce Wayne","hero":"Batman","power":"money","xp":512,"color":"black"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
