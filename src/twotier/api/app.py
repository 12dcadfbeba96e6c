"""The FastAPI application: one policy per process, built at start-up, closed at shutdown."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from twotier import __version__
from twotier.api.body_guard import BodyGuard
from twotier.api.errors import install_error_handlers
from twotier.api.hot_path import HotReads
from twotier.api.routes import batch, health, metrics
from twotier.api.routes.heroes import heroes_router
from twotier.bootstrap import build_policy
from twotier.config import Settings, get_settings
from twotier.policy import CachePolicy


def create_app(settings: Settings | None = None, policy: CachePolicy | None = None) -> FastAPI:
    """The app. With ``policy``, the caller owns it (Lambda keeps one across invocations);
    without, the app builds one at start-up and closes it at shutdown."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if policy is not None:
            yield
            return
        owned = build_policy(settings)
        try:
            await owned.prepare()
            app.state.policy = owned
            # Everything made so far lives as long as the process: keep it out of the
            # collector's reach, so full collections stay short (tail latency).
            gc.freeze()
            yield
        finally:
            await owned.close()

    # Swagger UI and ReDoc are served from the installed package, not from a CDN.
    app = FastAPIOffline(
        title="twotier",
        version=__version__,
        description="A CRUD API over a database with a cache in front (lazy loading, "
        "write-through, versioned entries). Every read says how it was served in `X-Cache`.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    if policy is not None:
        app.state.policy = policy
    install_error_handlers(app)
    # The last added runs first: BodyGuard (413/415) sees every body before the hot path.
    app.add_middleware(HotReads)
    app.add_middleware(BodyGuard, max_bytes=settings.max_body_bytes)
    app.include_router(health.router)
    app.include_router(heroes_router(settings))
    app.include_router(batch.batch_router(settings.batch_max_items))
    app.include_router(metrics.router)
    return app
