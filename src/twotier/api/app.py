"""The application: the endpoint table and FastAPI's own routes behind one set of guards;
one service per process, built at start-up, closed at shutdown."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from twotier import __version__, logs
from twotier.access.keys import Role
from twotier.access.rules import Access
from twotier.api.access_guard import AccessGuard
from twotier.api.body_guard import BodyGuard
from twotier.api.dispatch import Dispatcher, Edge, claimed
from twotier.api.endpoints import EndpointTable, resource_endpoints
from twotier.api.errors import install_error_handlers
from twotier.api.head import HeadAsGet
from twotier.api.observe import Observe
from twotier.api.openapi import document
from twotier.api.parameters import QueryGuard
from twotier.api.routes import admin, health, metrics
from twotier.api.routes.docs import add_docs
from twotier.api.seed_batch import batch_endpoint
from twotier.api.seed_batch import screen as screen_batch
from twotier.bootstrap import Composition, compose, declared_resources, rules_of
from twotier.config import Settings, get_settings
from twotier.emf import report_every
from twotier.errors import StoreUnavailable
from twotier.follow.follower import following
from twotier.logs import redacted_url
from twotier.resources import default_resource
from twotier.service import Service
from twotier.telemetry import READY

log = logging.getLogger("twotier")


def create_app(settings: Settings | None = None, composition: Composition | None = None) -> App:
    """The app. With ``composition``, the caller owns the service (Lambda keeps one across
    invocations); without, the app builds one at start-up and closes it at shutdown."""
    settings = settings or get_settings()
    resources = declared_resources(settings)

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        if composition is not None:
            yield
            return
        owned = compose(settings)
        try:
            await owned.service.prepare()
            app.serve(owned.service, owned.access)
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

    api = FastAPI(
        title="twotier",
        version=__version__,
        description="A CRUD API over a database with a cache in front (lazy loading, "
        "write-through, versioned entries). Every read says how it was served in `X-Cache`.",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        **_WITHOUT_NATIVE_TELEMETRY,
    )
    api.state.settings = settings
    install_error_handlers(api)
    api.include_router(health.router)
    api.include_router(metrics.router)
    api.include_router(admin.router)

    by_name = {resource.name: resource for resource in resources}
    table = EndpointTable(
        {
            **{resource.name: resource_endpoints(resource, settings) for resource in resources},
            "batch": batch_endpoint(by_name, default_resource(resources), settings.batch_max_items),
        }
    )
    if settings.docs == "open":
        # With TWOTIER_DOCS=off, neither the pages nor the document are served at all.
        add_docs(api, lambda: document(api, table, rules_of(settings)))
    dispatcher = Dispatcher(table)
    others = QueryGuard(api)

    async def inside(scope: Scope, receive: Receive, send: Send) -> None:
        await (dispatcher if claimed(scope) else others)(scope, receive, send)

    guarded = _guarded(inside, settings)
    edge = Edge(table, guarded, Observe(dispatcher, access_log_enabled=settings.access_log))
    app = App(api, edge, dispatcher, guarded)
    if composition is not None:
        app.serve(composition.service, composition.access)
    return app


class App:
    """The ASGI app: the endpoint table's requests to the edge, every other one (docs,
    admin, health, metrics) through the same guards to FastAPI, and the lifespan to
    FastAPI's."""

    def __init__(self, api: FastAPI, edge: Edge, dispatcher: Dispatcher, guarded: ASGIApp) -> None:
        self.api = api
        #: The service, the access rules and the settings, as every request finds them.
        self.state = api.state
        self.edge = edge
        self.dispatcher = dispatcher
        self.guarded = guarded

    def serve(self, service: Service, access: Access) -> None:
        """Serve with ``service`` and ``access`` (from start-up, or Lambda's own)."""
        self.state.service = service
        self.state.access = access
        self.dispatcher.serve(service)
        self.edge.serve(self.dispatcher.policies, access)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        scope["app"] = self
        if self.edge.claims(scope):
            await self.edge(scope, receive, send)
        else:
            await self.guarded(scope, receive, send)


def _guarded(app: ASGIApp, settings: Settings) -> ASGIApp:
    """``app`` behind every guard. The outermost first: Observe sees every request (and
    times it all), CORS answers preflights, HeadAsGet serves HEAD as GET without the body,
    AccessGuard turns away who may not (before any body is read), BodyGuard (400/408/413/
    415/503) reads and parses every body."""
    app = BodyGuard(
        app,
        max_bytes=settings.max_body_bytes,
        deadline=settings.body_timeout,
        budget=settings.body_buffer_bytes,
        screen=screen_batch,
    )
    app = HeadAsGet(AccessGuard(app))
    if settings.cors_origins:
        app = CORSMiddleware(
            app,
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
    return Observe(app, access_log_enabled=settings.access_log)


# FastAPI's own OpenTelemetry hooks ask, on every request, whether a provider is configured
# (environment lookups: profiled at 6% of a cached read). twotier reports through its own
# metrics and logs; where FastAPI has the switch, it is off.
_WITHOUT_NATIVE_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI).parameters
    else {}
)


def serve_app() -> App:
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
