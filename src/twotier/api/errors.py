"""Domain errors to HTTP, at one boundary: every error a client sees is JSON ``{"detail": …}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from twotier.api.responses import RETRY_AFTER_SECONDS
from twotier.store.base import StoreUnavailable

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """Every error: ``detail`` says what is wrong (a list naming the fields, for a 422)."""

    detail: Any


def _documented(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


#: The errors any route may answer, declared once for the OpenAPI document.
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _documented("The body is not valid JSON."),
    401: {
        **_documented("No API key, or not a valid one (X-API-Key or Authorization: Bearer)."),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    },
    403: _documented("The API key's role does not allow this request."),
    408: _documented("The body did not arrive in time (TWOTIER_BODY_TIMEOUT)."),
    413: _documented("The body is larger than the limit (TWOTIER_MAX_BODY_BYTES)."),
    415: _documented("The body is not JSON (Content-Type)."),
    429: {
        **_documented("Rate limit exceeded; retry after Retry-After seconds."),
        "headers": {"Retry-After": {"schema": {"type": "string"}}},
    },
    503: {
        **_documented(
            "The database is unreachable, or too many bodies are in flight; nothing was "
            "written. Try again after Retry-After seconds."
        ),
        "headers": {"Retry-After": {"schema": {"type": "string"}}},
    },
}


def error_response(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    for error in errors:
        if error.get("type") == "json_invalid":
            reason = error.get("ctx", {}).get("error", "")
            return error_response(400, f"malformed JSON body: {reason}".rstrip(": "))
    # Name the field and say what is wrong; leave out the echoed input and internals.
    return error_response(
        422, [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
    )


def store_unavailable_response(exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", exc)
    return error_response(503, str(exc), {"Retry-After": RETRY_AFTER_SECONDS})


async def _store_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    return store_unavailable_response(exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
