"""Query parameters on FastAPI's own paths: none is taken, so any is a 422, never ignored.

FastAPI drops the parameters a route does not declare. The endpoint table's rows judge
their own (``api.dispatch``); every other path (health, admin, metrics) takes none, and
``QueryGuard`` refuses a query string there before any route runs. The docs pages are left
alone: Swagger UI's OAuth2 redirect takes its provider's parameters.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from twotier.api.paths import app_path
from twotier.api.responses import send_error

#: The docs' paths: not twotier's to judge.
_DOCS_PATHS = ("/docs", "/redoc", "/openapi.json", "/static-offline-docs/")


class QueryGuard:
    """A query string on a path that takes none: 422, naming each parameter."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string") if scope["type"] == "http" else None
        if query and not app_path(scope).startswith(_DOCS_PATHS):
            # Separators alone ("?&") name no parameter: nothing to refuse.
            names = dict.fromkeys(
                name for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            )
            if names:
                errors = [
                    {
                        "loc": ["query", name],
                        "msg": "not a parameter of this path (it takes no query parameters)",
                        "type": "unknown_parameter",
                    }
                    for name in names
                ]
                await send_error(send, 422, errors)
                return
        await self.app(scope, receive, send)
