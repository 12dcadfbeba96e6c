"""``HEAD`` on every ``GET`` route: answered as the ``GET`` would be, without its body.

RFC 9110 (§9.3.2) asks every resource that answers ``GET`` to answer ``HEAD`` alike, and
CORS advertises it; FastAPI's routes only take the methods they declare. Answering it here,
once, in front of the hot path and the routes, keeps one definition of each read: the
headers (``Content-Length``, ``ETag``, ``X-Cache``) are the ``GET``'s own.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        # In place, not a copy: the middlewares outside read what the routes put in the
        # scope (the route template); Observe took the method before calling in.
        scope["method"] = "GET"
        await self.app(scope, receive, headers_only)
