"""``POST /batch``: the seed's batch protocol over HTTP, for clients of its API Gateway endpoint."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.openapi.models import Example

from twotier import batch
from twotier.api.dependencies import PolicyDep

router = APIRouter(tags=["seed protocol"])

_EXAMPLES: dict[str, Example] = {
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


@router.post(
    "/batch",
    summary="Run a seed batch event",
    description="Takes the seed Lambda's event as the body and answers the same object it "
    "would: `{statusCode, body}`. The HTTP status is the event's statusCode.",
    responses={
        200: {"description": '`{"statusCode": 200, "body": [rows] | "write success"}`'},
        400: {"description": 'A malformed event: `{"statusCode": 400, "body": {"detail"}}`'},
        503: {"description": "The database is unreachable; nothing was written."},
    },
)
async def run_batch(
    request: Request,
    policy: PolicyDep,
    event: Annotated[Any, Body(openapi_examples=_EXAMPLES)] = None,
) -> Response:
    # JSON bodies are answered alike by api.hot_path in front of this route.
    max_items: int = request.app.state.settings.batch_max_items
    status, body, outcome = await batch.serve(policy, event, max_items)
    headers = {"X-Cache": outcome.value} if outcome else None
    return Response(body, status, headers, media_type="application/json")
