"""Responses shared by the FastAPI routes and the hot path, so both answer alike."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from twotier.policy import Served

JSON = "application/json"


def hero_response(served: Served, hero_id: int) -> Response:
    """A read of one hero: its JSON, or a 404; how it was served in ``X-Cache``."""
    headers = {"X-Cache": served.outcome.value}
    if served.body is None:
        return JSONResponse({"detail": f"hero {hero_id} not found"}, 404, headers)
    return Response(served.body, 200, headers, media_type=JSON)
