"""The OpenAPI document and the pages that show it (Swagger UI, ReDoc), served from the
installed packages' files, never from a CDN."""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, JSONResponse

OPENAPI = "/openapi.json"
_STATIC = "/static-offline-docs"
_REDIRECT = "/docs/oauth2-redirect"


def add_docs(api: FastAPI, document: Callable[[], dict[str, Any]]) -> None:
    """``/openapi.json`` (``document``, made once), ``/docs``, ``/redoc`` and their files."""
    # fastapi-offline packages Swagger UI's and ReDoc's files.
    static = files("fastapi_offline") / "static"
    api.mount(_STATIC, StaticFiles(directory=str(static)), name="static-offline-docs")
    made: list[dict[str, Any]] = []

    @api.get(OPENAPI, include_in_schema=False)
    async def openapi() -> JSONResponse:
        if not made:
            made.append(document())
        return JSONResponse(made[0])

    @api.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{OPENAPI}",
            title=f"{api.title} - Swagger UI",
            oauth2_redirect_url=_REDIRECT,
            swagger_js_url=f"{root}{_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{root}{_STATIC}/favicon.png",
        )

    @api.get(_REDIRECT, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @api.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{OPENAPI}",
            title=f"{api.title} - ReDoc",
            redoc_js_url=f"{root}{_STATIC}/redoc.standalone.js",
            with_google_fonts=False,
            redoc_favicon_url=f"{root}{_STATIC}/favicon.png",
        )
