"""The AWS Lambda entrypoint: ``twotier.aws_lambda.handler``.

Serves API Gateway proxy events (REST API payload v1, HTTP API payload v2) with the same
FastAPI app as the HTTP server, through Mangum, and the seed's raw batch events
(``{"USE_CACHE", "REQUEST", "SQLS"}``) directly.

Everything expensive lives across warm invocations: one event loop, one policy (one database
pool, one cache client), built on the first invocation. Mangum's per-invocation lifespan is
off for that reason: it would open and close the pools on every call.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import orjson
from mangum import Mangum

from twotier import batch
from twotier.api.app import create_app
from twotier.bootstrap import build_policy
from twotier.config import Settings, get_settings
from twotier.policy import CachePolicy

_SEED_KEYS = frozenset({"USE_CACHE", "REQUEST", "SQLS"})
_API_GATEWAY_KEYS = frozenset({"requestContext", "httpMethod", "routeKey"})


class Runtime:
    """What a warm Lambda container keeps between invocations."""

    def __init__(self, settings: Settings) -> None:
        # No near-cache: a frozen container cannot hear invalidations between invocations,
        # so its first reads after a thaw could be stale. Every read asks Redis.
        settings = settings.model_copy(update={"near_cache_ttl": 0})
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.policy: CachePolicy = build_policy(settings)
        self.loop.run_until_complete(self.policy.prepare())
        self.asgi = Mangum(create_app(settings, policy=self.policy), lifespan="off")
        gc.freeze()  # long-lived: out of the collector's way (see api.app)

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
        asyncio.set_event_loop(self.loop)  # Mangum runs the app on the current loop
        if isinstance(event, dict) and _SEED_KEYS & event.keys():
            _, body, _ = self.loop.run_until_complete(
                batch.serve(self.policy, event, self.settings.batch_max_items)
            )
            answer: dict[str, Any] = orjson.loads(body)
            return answer
        if isinstance(event, dict) and _API_GATEWAY_KEYS & event.keys():
            return self.asgi(event, context)
        return {
            "statusCode": 400,
            "body": {
                "detail": "unrecognised event: expected an API Gateway proxy event (payload "
                "v1 or v2) or a seed batch event with USE_CACHE, REQUEST and SQLS"
            },
        }

    def close(self) -> None:
        self.loop.run_until_complete(self.policy.close())
        self.loop.close()


_runtime: Runtime | None = None


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(get_settings())
    return _runtime


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The function's handler."""
    return runtime()(event, context)
