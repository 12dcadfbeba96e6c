"""``POST /batch``: the seed's batch protocol over HTTP, for clients of its API Gateway endpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from twotier import batch
from twotier.api.access_guard import authorize_scope
from twotier.api.dependencies import API_KEY, ServiceDep, bypassing
from twotier.api.errors import COMMON_ERRORS
from twotier.api.responses import batch_response, error_response
from twotier.resources import Resource
from twotier.resources.fields import IntegerField

_EXAMPLES: dict[str, Any] = {
    "read by xp": {"value": {"USE_CACHE": "True", "REQUEST": "read", "SQLS": [17, 42]}},
    "read by id": {"value": {"USE_CACHE": "False", "REQUEST": "read", "KEY": "id", "SQLS": [1]}},
    "write": {
        "value": {
            "USE_CACHE": "True",
            "REQUEST": "write",
            "SQLS": [
                {"name": "Ada", "hero": "Captain Ada", "power": "math", "xp": 5, "color": "blue"}
            ],
        }
    },
}


def event_schema(resources: Mapping[str, Resource], default: str, max_items: int) -> dict[str, Any]:
    """The batch event as JSON Schema: for each resource, a read by each of its lookup
    fields and by its key, and a write (``RESOURCE`` may be left out for ``default``)."""
    use_cache = {"oneOf": [{"type": "boolean"}, {"enum": ["True", "False", "true", "false"]}]}

    def values(resource: Resource, name: str) -> dict[str, Any]:
        spec = resource.field(name)
        schema = _schema_of(spec)
        if not isinstance(spec, IntegerField):
            return schema
        low, high = spec.bounds
        if name == resource.key and resource.auto_key:
            low = max(low, 1)
            schema = schema | {"minimum": low}
        # Numbers, or (as seed clients read them from a CSV) digit strings.
        digits = len(str(high)) - 1
        pattern = f"^[1-9][0-9]{{0,{digits - 1}}}$" if low >= 1 else f"^[0-9]{{1,{digits}}}$"
        if low >= 0:
            return {"oneOf": [schema, {"type": "string", "pattern": pattern}]}
        return schema

    def event(
        resource: Resource, request: str, items: dict[str, Any], key: str | None
    ) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "USE_CACHE": use_cache,
            "REQUEST": {"const": request},
            "SQLS": {"type": "array", "items": items, "maxItems": max_items},
            "RESOURCE": {"const": resource.name},
        }
        required = ["USE_CACHE", "REQUEST", "SQLS"]
        if resource.name != default:
            required.append("RESOURCE")
        if key is not None:
            first = key == ([*resource.lookups, resource.key][0])
            properties["KEY"] = {"enum": [key]} if first else {"const": key}
            if not first:
                required.append("KEY")
        return {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }

    events = []
    for resource in resources.values():
        for name in [*resource.lookups, resource.key]:
            events.append(event(resource, "read", values(resource, name), name))
        events.append(event(resource, "write", resource.create_model.model_json_schema(), None))
    # anyOf: an event may fit more than one form (a default resource named or not).
    return {"anyOf": events}


def _schema_of(spec: Any) -> dict[str, Any]:
    from pydantic import TypeAdapter

    schema: dict[str, Any] = TypeAdapter(spec.value_type()).json_schema()
    return schema


def batch_router(resources: Mapping[str, Resource], default: str, max_items: int) -> APIRouter:
    router = APIRouter(tags=["seed protocol"], responses=COMMON_ERRORS, dependencies=[API_KEY])

    @router.post(
        "/batch",
        summary="Run a seed batch event",
        description="Takes the seed Lambda's event as the body and answers the same object it "
        "would: `{statusCode, body}`. The HTTP status is the event's statusCode. "
        f"`RESOURCE` names the resource (default: {default}).",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": event_schema(resources, default, max_items),
                        "examples": _EXAMPLES if default == "heroes" else {},
                    }
                },
            }
        },
        responses={
            200: {"description": '`{"statusCode": 200, "body": [rows] | "write success"}`'},
            400: {"description": 'A malformed event: `{"statusCode": 400, "body": {"detail"}}`'},
            409: {"description": "A write's key exists already; nothing was written."},
            503: {"description": "The database is unreachable; nothing was written."},
        },
    )
    async def run_batch(request: Request, service: ServiceDep) -> Response:
        # JSON bodies are answered alike by api.hot_path in front of this route.
        raw = await request.body()
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            return error_response(400, f"malformed JSON body: {error}")
        answer = await batch.serve(
            service,
            event,
            max_items,
            lambda role: authorize_scope(request.scope, role),
            lambda: bypassing(request.scope),
        )
        return batch_response(*answer)

    return router
