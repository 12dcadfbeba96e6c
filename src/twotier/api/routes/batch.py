"""``POST /batch``: the seed's batch protocol over HTTP, for clients of its API Gateway endpoint."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from twotier import batch
from twotier.api.access_guard import authorize_scope
from twotier.api.dependencies import API_KEY, PolicyDep
from twotier.api.errors import COMMON_ERRORS, error_response
from twotier.api.responses import batch_response
from twotier.heroes import UINT_MAX, HeroIn

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


def event_schema(max_items: int) -> dict[str, Any]:
    """The seed's batch event as JSON Schema: a read by xp, a read by id, or a write."""
    use_cache = {"oneOf": [{"type": "boolean"}, {"enum": ["True", "False", "true", "false"]}]}

    # Numbers, or (as seed clients read them from a CSV) digit strings.
    def number(minimum: int) -> dict[str, Any]:
        return {
            "oneOf": [
                {"type": "integer", "minimum": minimum, "maximum": UINT_MAX},
                {
                    "type": "string",
                    "pattern": "^[0-9]{1,9}$" if minimum == 0 else "^[1-9][0-9]{0,8}$",
                },
            ]
        }

    def event(request: str, items: dict[str, Any], key: dict[str, Any] | None) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "USE_CACHE": use_cache,
            "REQUEST": {"const": request},
            "SQLS": {"type": "array", "items": items, "maxItems": max_items},
        }
        if key is not None:
            properties["KEY"] = key
        return {
            "type": "object",
            "properties": properties,
            "required": ["USE_CACHE", "REQUEST", "SQLS"]
            + (["KEY"] if key and "const" in key else []),
            "additionalProperties": False,
        }

    return {
        "oneOf": [
            event("read", number(0), {"enum": ["xp"]}),
            event("read", number(1), {"const": "id"}),
            event("write", HeroIn.model_json_schema(), None),
        ]
    }


def batch_router(max_items: int) -> APIRouter:
    router = APIRouter(tags=["seed protocol"], responses=COMMON_ERRORS, dependencies=[API_KEY])

    @router.post(
        "/batch",
        summary="Run a seed batch event",
        description="Takes the seed Lambda's event as the body and answers the same object it "
        "would: `{statusCode, body}`. The HTTP status is the event's statusCode.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": event_schema(max_items), "examples": _EXAMPLES}
                },
            }
        },
        responses={
            200: {"description": '`{"statusCode": 200, "body": [rows] | "write success"}`'},
            400: {"description": 'A malformed event: `{"statusCode": 400, "body": {"detail"}}`'},
            503: {"description": "The database is unreachable; nothing was written."},
        },
    )
    async def run_batch(request: Request, policy: PolicyDep) -> Response:
        # JSON bodies are answered alike by api.hot_path in front of this route.
        raw = await request.body()
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            return error_response(400, f"malformed JSON body: {error}")
        answer = await batch.serve(
            policy, event, max_items, lambda role: authorize_scope(request.scope, role)
        )
        return batch_response(*answer)

    return router
