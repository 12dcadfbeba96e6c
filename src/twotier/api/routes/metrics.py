"""``GET /metrics``: Prometheus exposition of this process's counters."""

from __future__ import annotations

from fastapi import APIRouter, Response

from twotier.api.dependencies import API_KEY
from twotier.telemetry import CONTENT_TYPE, exposition

router = APIRouter(tags=["operations"], dependencies=[API_KEY])


@router.get("/metrics", summary="Prometheus metrics of this process", response_class=Response)
async def metrics() -> Response:
    return Response(exposition(), media_type=CONTENT_TYPE)
