"""The FastAPI application: one policy per process, built at start-up, closed at shutdown."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.middleware.cors import CORSMiddleware

from twotier import __version__, logs
from twotier.access.keys import Role
from twotier.access.rules import Access, AccessRules
from twotier.api.access_guard import AccessGuard
from twotier.api.body_guard import BodyGuard
from twotier.api.errors import install_error_handlers
from twotier.api.front_door import open_front_door
from twotier.api.head import HeadAsGet
from twotier.api.hot_path import HotPath, screen_batch
from twotier.api.observe import Observe
from twotier.api.parameters import QueryGuard
from twotier.api.routes import admin, batch, health, metrics
from twotier.api.routes.resources import resource_router
from twotier.bootstrap import Composition, compose, declared_resources, rules_of
from twotier.config import Settings, get_settings
from twotier.emf import report_every
from twotier.follow.follower import following
from twotier.logs import redacted_url
from twotier.resources import default_resource
from twotier.service import Service
from twotier.store.base import StoreUnavailable
from twotier.telemetry import READY

log = logging.getLogger("twotier")


def create_app(
    settings: Settings | None = None,
    composition: Composition | None = None,
    *,
    hot_path: bool = True,
) -> FastAPI:
    """The app. With ``composition``, the caller owns the service (Lambda keeps one across
    invocations); without, the app builds one at start-up and closes it at shutdown.
    ``hot_path=False`` leaves every request to the routes (the parity test compares)."""
    settings = settings or get_settings()
    resources = declared_resources(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if composition is not None:
            yield
            return
        owned = compose(settings)
        try:
            await owned.service.prepare()
            app.state.service = owned.service
            app.state.access = owned.access
            log_start(settings)
            await hint_at_keys(owned.access)
            async with following(owned.service, settings), reporting(owned.service, settings):
                # Everything made so far lives as long as the process: keep it out of the
                # collector's reach, so full collections stay short (tail latency).
                gc.freeze()
                yield
        finally:
            # What the buffered handler holds, before the worker exits: first what came
            # before the shutdown (should closing the tiers outlast the server's patience),
            # then what closing them said.
            logs.flush()
            await owned.service.close()
            logs.flush()

    # Swagger UI and ReDoc are served from the installed package, not from a CDN; with
    # TWOTIER_DOCS=off, neither they nor the OpenAPI document are served at all.
    make = (
        FastAPIOffline
        if settings.docs == "open"
        else partial(FastAPI, openapi_url=None, docs_url=None, redoc_url=None)
    )
    app = make(
        title="twotier",
        version=__version__,
        description="A CRUD API over a database with a cache in front (lazy loading, "
        "write-through, versioned entries). Every read says how it was served in `X-Cache`.",
        lifespan=lifespan,
        **_WITHOUT_NATIVE_TELEMETRY,
    )
    app.state.settings = settings
    if composition is not None:
        app.state.service = composition.service
        app.state.access = composition.access
    install_error_handlers(app)
    # The last added runs first: Observe sees every request (and times it all), CORS
    # answers preflights, HeadAsGet serves HEAD as GET without the body, AccessGuard turns
    # away who may not (before any body is read), BodyGuard (400/408/413/415/503) reads
    # every body before the hot path, QueryGuard refuses a query string where no route
    # takes one.
    app.add_middleware(QueryGuard)
    app.add_middleware(HotPath, enabled=hot_path)
    app.add_middleware(
        BodyGuard,
        max_bytes=settings.max_body_bytes,
        deadline=settings.body_timeout,
        budget=settings.body_buffer_bytes,
        screen=screen_batch,
    )
    app.add_middleware(AccessGuard)
    app.add_middleware(HeadAsGet)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Content-Type",
                "X-API-Key",
                "Authorization",
                "X-Request-Id",
                "If-Match",
                "If-None-Match",
            ],
            expose_headers=["X-Cache", "ETag", "X-Request-Id", "Retry-After", "Location"],
            max_age=600,
        )
    app.add_middleware(Observe, access_log_enabled=settings.access_log)
    if hot_path:
        open_front_door(app, access_log=settings.access_log)
    app.include_router(health.router)
    for resource in resources:
        app.include_router(resource_router(resource, settings))
    by_name = {resource.name: resource for resource in resources}
    app.include_router(
        batch.batch_router(by_name, default_resource(resources), settings.batch_max_items)
    )
    app.include_router(metrics.router)
    app.include_router(admin.router)
    document_key_use(app, rules_of(settings))
    return app


# FastAPI's own OpenTelemetry hooks ask, on every request, whether a provider is configured
# (environment lookups: profiled at 6% of a cached read). twotier reports through its own
# metrics and logs; where FastAPI has the switch, it is off.
_WITHOUT_NATIVE_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI).parameters
    else {}
)


def serve_app() -> FastAPI:
    """The servers' app factory: settings from the environment, JSON logs (each worker
    process calls it)."""
    settings = get_settings()
    logs.configure(settings.log_level, buffered=True)
    return create_app(settings)


@asynccontextmanager
async def reporting(service: Service, settings: Settings) -> AsyncIterator[None]:
    """The server's metrics as EMF lines every TWOTIER_EMF_EVERY seconds (none: 0), its
    readiness among them, for as long as this lasts."""
    if not settings.emf_every:
        yield
        return

    async def ready() -> None:
        states = await service.readiness()
        READY.set(1.0 if all(state == "ok" for state in states.values()) else 0.0)

    stop = asyncio.Event()
    task = asyncio.create_task(report_every(stop, settings.emf_every, before=ready))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait({task}, timeout=5)
        task.cancel()


def log_start(settings: Settings) -> None:
    """The start-up line: what this process serves from (URLs without their passwords)."""
    log.info(
        "started",
        extra={
            "version": __version__,
            "database": redacted_url(settings.database_url),
            "cache": redacted_url(settings.cache_url),
            "cache_ttl": settings.cache_ttl,
            "resources": [resource.name for resource in declared_resources(settings)],
        },
    )


async def hint_at_keys(access: Access) -> None:
    """Say how to get a key when writes need one and none exists yet (``make run``)."""
    if not access.rules.writes_need_key:
        log.warning("writes are open to anyone: TWOTIER_REQUIRE_KEY_FOR_WRITES is off")
        return
    try:
        if await access.keyring.has_role(Role.WRITE):
            return
    except StoreUnavailable:
        return  # readiness says so; the first request with a key will retry
    log.warning(
        "writes need an API key with role write, and there is none yet: create one with "
        "`twotier keys create --role write` (then send it as X-API-Key)"
    )


def document_key_use(app: FastAPI, rules: AccessRules) -> None:
    """Say in the OpenAPI document which operations take a key without needing one, by
    the same rule the guard applies (routes declare the key as if always needed)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for path, operations in schema.get("paths", {}).items():
                for method, operation in operations.items():
                    if "security" in operation and rules.role_for(method.upper(), path) is None:
                        operation["security"] = [*operation["security"], {}]  # {}: optional
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
