"""The AWS Lambda entrypoint: ``twotier.aws_lambda.handler``.

Serves API Gateway proxy events (REST API payload v1, HTTP API payload v2) with the same
app as the HTTP server (``api.app``), through Mangum, and the seed's raw batch events
(``{"USE_CACHE", "REQUEST", "SQLS"}``) directly.

Everything expensive lives across warm invocations: one event loop, one policy (one database
pool, one cache client), built on the first invocation. Mangum's per-invocation lifespan is
off for that reason: it would open and close the pools on every call. A cold start imports
only what its first event needs: the HTTP app and Mangum wait for the first API Gateway
event (``benchmarks/lambda_cold_start.py`` measures it).

Logs are JSON lines on stdout (CloudWatch Logs); after each invocation the metrics that
changed follow as Embedded Metric Format documents, which CloudWatch turns into metrics.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from twotier import batch, logs
from twotier.access.keys import Role
from twotier.api.observe import log_request
from twotier.bootstrap import Composition, compose, log_start
from twotier.config import Settings, get_settings
from twotier.emf import EmfExporter
from twotier.errors import StoreUnavailable
from twotier.service import Service
from twotier.telemetry import CURRENT_REQUEST, RequestRecord, count_request

log = logging.getLogger("twotier")

_SEED_KEYS = frozenset({"USE_CACHE", "REQUEST", "SQLS"})
_API_GATEWAY_KEYS = frozenset({"requestContext", "httpMethod", "routeKey"})
_SEED_ROUTE = "seed-event"  # the route label of a direct invocation with a batch event


def _is_stream_event(event: dict[str, Any]) -> bool:
    """Records an event source mapping delivers from DynamoDB Streams."""
    records = event.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:dynamodb" for r in records)
    )


class Runtime:
    """What a warm Lambda container keeps between invocations."""

    def __init__(self, settings: Settings) -> None:
        # No near-cache: a frozen container cannot hear invalidations between invocations,
        # so its first reads after a thaw could be stale. Every read asks Redis.
        settings = settings.model_copy(update={"near_cache_ttl": 0})
        self.settings = settings
        logs.configure(settings.log_level)
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.composition: Composition = compose(settings)
        self.service: Service = self.composition.service
        # A cold start leaves a schema made for this declaration alone: no plan, no lock
        # (a thousand containers starting at once would queue on it).
        self.loop.run_until_complete(self.service.prepare(if_changed=True))
        self._asgi: Callable[[Any, Any], dict[str, Any]] | None = None
        self.metrics = EmfExporter()
        log_start(settings)
        gc.freeze()  # long-lived: out of the collector's way (see api.app)

    @property
    def asgi(self) -> Callable[[Any, Any], dict[str, Any]]:
        """The HTTP app behind Mangum, built for the first API Gateway event."""
        if self._asgi is None:
            from mangum import Mangum

            from twotier.api.app import create_app

            self._asgi = Mangum(create_app(self.settings, self.composition), lifespan="off")
        return self._asgi

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
        try:
            return self._serve(event, context)
        except Exception as error:
            # A bug: the caller gets a JSON 500 rather than a raised invocation error, and
            # the log the traceback. (API Gateway events never get here: the app answers.)
            log.error(
                "unhandled error: %s",
                type(error).__name__,
                exc_info=error,
                extra={"request_id": _invocation_id(context)},
            )
            return {"statusCode": 500, "body": {"detail": "internal server error"}}
        finally:
            self.flush_metrics()

    def _serve(self, event: Any, context: Any) -> dict[str, Any]:
        asyncio.set_event_loop(self.loop)  # Mangum runs the app on the current loop
        if isinstance(event, dict) and _SEED_KEYS & event.keys():
            return self._serve_seed_event(event, context)
        if isinstance(event, dict) and _API_GATEWAY_KEYS & event.keys():
            return self.asgi(event, context)
        if isinstance(event, dict) and "KEYS" in event:
            return self.loop.run_until_complete(self._manage_keys(event))
        if isinstance(event, dict) and _is_stream_event(event):
            from twotier.follow.sources import follow_stream_event  # DynamoDB's extra

            return self.loop.run_until_complete(follow_stream_event(self.service, event))
        return {
            "statusCode": 400,
            "body": {
                "detail": "unrecognised event: expected an API Gateway proxy event (payload "
                "v1 or v2), a seed batch event with USE_CACHE, REQUEST and SQLS, a KEYS "
                "event, or DynamoDB stream records"
            },
        }

    def _serve_seed_event(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """A direct invocation with a seed batch event, logged and counted like a request."""
        started = time.perf_counter()
        record = RequestRecord(_invocation_id(context))
        token = CURRENT_REQUEST.set(record)
        try:
            status, body, outcome = self.loop.run_until_complete(
                batch.serve(self.service, event, self.settings.batch_max_items)
            )
        except Exception as error:  # a bug; still counted and logged like a request
            log.error("unhandled error: %s", type(error).__name__, exc_info=error)
            status, body, outcome = 500, batch.error_body(500, "internal server error"), None
        finally:
            CURRENT_REQUEST.reset(token)
        elapsed = time.perf_counter() - started
        count_request(_SEED_ROUTE, "INVOKE", status, elapsed)
        if self.settings.access_log:
            log_request(
                record,
                method="INVOKE",
                route=_SEED_ROUTE,
                status=status,
                seconds=elapsed,
                cache=outcome.value if outcome else None,
                request=event.get("REQUEST"),
            )
        answer: dict[str, Any] = orjson.loads(body)
        return answer

    async def _manage_keys(self, event: dict[str, Any]) -> dict[str, Any]:
        try:
            return await manage_keys(self.service, event)
        except StoreUnavailable as error:
            return {"statusCode": 503, "body": {"detail": str(error)}}

    def flush_metrics(self) -> None:
        """What changed during the invocation, as EMF lines for CloudWatch."""
        self.metrics.write(sys.stdout)

    def close(self) -> None:
        self.loop.run_until_complete(self.service.close())
        self.loop.close()


async def manage_keys(service: Service, event: dict[str, Any]) -> dict[str, Any]:
    """API keys by direct invocation, the way to make the first admin key in AWS: who may
    invoke the function is IAM's decision, and the answer goes to the caller, never to the
    logs. ``{"KEYS": "create", "ROLE": "admin", "NAME": "ops"}``, ``{"KEYS": "list"}``,
    ``{"KEYS": "revoke", "ID": "…"}``. A key made or revoked works so at once in this
    container."""
    action = event.get("KEYS")
    if action == "create":
        try:
            role = Role(event.get("ROLE", "read"))
        except ValueError:
            return {"statusCode": 400, "body": {"detail": "ROLE must be read, write or admin"}}
        name = str(event.get("NAME") or f"{role.value} key")
        try:
            record, token = await service.create_key(name, role)
        except ValueError as error:
            return {"statusCode": 400, "body": {"detail": f"NAME: {error}"}}
        return {"statusCode": 201, "body": {"id": record.id, "role": role.value, "key": token}}
    if action == "list":
        keys = await service.list_keys()
        return {
            "statusCode": 200,
            "body": [
                {"id": k.id, "name": k.name, "role": k.role.value, "active": k.active} for k in keys
            ],
        }
    if action == "revoke":
        revoked = await service.revoke_key(str(event.get("ID", "")))
        return {"statusCode": 200 if revoked else 404, "body": {"revoked": revoked}}
    return {"statusCode": 400, "body": {"detail": "KEYS must be create, list or revoke"}}


def _invocation_id(context: Any) -> str:
    return str(getattr(context, "aws_request_id", "")) or "unknown"


_runtime: Runtime | None = None


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(get_settings())
    return _runtime


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The function's handler."""
    return runtime()(event, context)
