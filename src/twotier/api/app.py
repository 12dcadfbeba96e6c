"""The FastAPI application: one policy per process, built at start-up, closed at shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from twotier import __version__
from twotier.api.body_guard import BodyGuard
from twotier.api.errors import install_error_handlers
from twotier.api.routes import health
from twotier.api.routes.heroes import heroes_router
from twotier.bootstrap import build_policy
from twotier.config import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        policy = build_policy(settings)
        try:
            await policy.prepare()
            app.state.policy = policy
            yield
        finally:
            await policy.close()

    # Swagger UI and ReDoc are served from the installed package, not from a CDN.
    app = FastAPIOffline(
        title="twotier",
        version=__version__,
        description="A CRUD API over a database with a cache in front (lazy loading, "
        "write-through, versioned entries). Every read says how it was served in `X-Cache`.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodyGuard, max_bytes=settings.max_body_bytes)
    app.include_router(health.router)
    app.include_router(heroes_router(settings))
    return app
