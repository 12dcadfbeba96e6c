"""The application: the endpoint table and FastAPI's own routes behind one set of guards;
one service per process, built at start-up, closed at shutdown.

FastAPI serves only the paths outside the table (docs, admin, health, metrics) and the
servers' lifespan, so it is imported and built the first time one of those is asked for: a
Lambda container answering resource requests never pays for it."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from twotier import __version__, logs
from twotier.access.keys import Role
from twotier.access.rules import Access
from twotier.api.access_guard import AccessGuard
from twotier.api.body_guard import BodyGuard
from twotier.api.dispatch import Dispatcher, Edge, claimed
from twotier.api.endpoints import EndpointTable, resource_endpoints
from twotier.api.head import HeadAsGet
from twotier.api.observe import Observe
from twotier.api.parameters import QueryGuard
from twotier.api.relations import with_relations
from twotier.api.seed_batch import batch_endpoint
from twotier.api.seed_batch import screen as screen_batch
from twotier.bootstrap import Composition, compose, declared_resources, log_start, rules_of
from twotier.config import Settings, get_settings
from twotier.errors import StoreUnavailable
from twotier.resources import default_resource
from twotier.service import Service
from twotier.telemetry import READY

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("twotier")

Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]


def create_app(settings: Settings | None = None, composition: Composition | None = None) -> App:
    """The app. With ``composition``, the caller owns the service (Lambda keeps one across
    invocations); without, the app builds one at start-up and closes it at shutdown."""
    settings = settings or get_settings()
    resources = declared_resources(settings)

    @asynccontextmanager
    async def lifespan(_: object) -> AsyncIterator[None]:
        if composition is not None:
            yield
            return
        from twotier.follow.follower import following

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

    by_name = {resource.name: resource for resource in resources}
    table = EndpointTable(
        {
            **{
                resource.name: with_relations(
                    resource_endpoints(resource, settings), resource, by_name, settings
                )
                for resource in resources
            },
            "batch": batch_endpoint(by_name, default_resource(resources), settings.batch_max_items),
        }
    )
    dispatcher = Dispatcher(table)
    state = State()
    state.settings = settings

    def build_api() -> FastAPI:
        return _fastapi(settings, table, state, lifespan)

    app = App(state, table, dispatcher, settings, build_api)
    if composition is not None:
        app.serve(composition.service, composition.access)
    return app


def _fastapi(settings: Settings, table: EndpointTable, state: State, lifespan: Lifespan) -> FastAPI:
    """FastAPI with its own routes (health, metrics, admin, the docs), sharing ``state``,
    behind the query guard (none of its paths takes a query parameter)."""
    from fastapi import FastAPI

    from twotier.api.errors import install_error_handlers
    from twotier.api.openapi import document
    from twotier.api.routes import admin, health, metrics
    from twotier.api.routes.docs import add_docs

    api = FastAPI(
        title="twotier",
        version=__version__,
        description="A CRUD API over a database with a cache in front (lazy loading, "
        "write-through, versioned entries). Every read says how it was served in `X-Cache`.",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        **_without_native_telemetry(FastAPI),
    )
    api.state = state
    install_error_handlers(api)
    api.include_router(health.router)
    api.include_router(metrics.router)
    api.include_router(admin.router)
    if settings.docs == "open":
        # With TWOTIER_DOCS=off, neither the pages nor the document are served at all.
        add_docs(api, lambda: document(api, table, rules_of(settings)))
    return api


class App:
    """The ASGI app: the endpoint table's requests to the edge, every other one (docs,
    admin, health, metrics) through the same guards to FastAPI, and the lifespan to
    FastAPI's (built on the first of them)."""

    def __init__(
        self,
        state: State,
        table: EndpointTable,
        dispatcher: Dispatcher,
        settings: Settings,
        build_api: Callable[[], FastAPI],
    ) -> None:
        #: The service, the access rules and the settings, as every request finds them.
        self.state = state
        self.dispatcher = dispatcher
        self._build_api = build_api
        self._api: FastAPI | None = None
        self._others: ASGIApp | None = None
        self.guarded = _guarded(self._inside, settings)
        self.edge = Edge(
            table, self.guarded, Observe(dispatcher, access_log_enabled=settings.access_log)
        )

    @property
    def api(self) -> FastAPI:
        """FastAPI's app with its routes, behind the query guard; built on first use."""
        if self._api is None:
            self._api = self._build_api()
        return self._api

    def serve(self, service: Service, access: Access) -> None:
        """Serve with ``service`` and ``access`` (from start-up, or Lambda's own)."""
        self.state.service = service
        self.state.access = access
        self.dispatcher.serve(service)
        self.edge.serve(self.dispatcher.policies, access)

    async def _inside(self, scope: Scope, receive: Receive, send: Send) -> None:
        if claimed(scope):
            await self.dispatcher(scope, receive, send)
            return
        if self._others is None:
            self._others = QueryGuard(self.api)
        await self._others(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        scope["app"] = self
        await self.edge(scope, receive, send)


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
        from starlette.middleware.cors import CORSMiddleware

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


def _without_native_telemetry(fastapi: type[FastAPI]) -> dict[str, Any]:
    """FastAPI's own OpenTelemetry hooks ask, on every request, whether a provider is
    configured (environment lookups: profiled at 6% of a cached read). twotier reports
    through its own metrics and logs; where FastAPI has the switch, it is off."""
    if "telemetry" in inspect.signature(fastapi).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    return {}


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

    from twotier.emf import report_every

    stop = asyncio.Event()
    task = asyncio.create_task(report_every(stop, settings.emf_every, before=ready))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait({task}, timeout=5)
        task.cancel()


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
