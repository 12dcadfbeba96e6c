"""Domain errors to HTTP, at one boundary: every error a client sees is JSON ``{"detail": …}``.

``problem`` answers a domain error from the one table (``twotier.problems``); the FastAPI
exception handlers and the endpoint table both answer through it. FastAPI is imported only
where its handlers are installed (``api.app`` builds it on first use).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from starlette.responses import Response

from twotier.api.responses import error_response
from twotier.problems import DOMAIN_ERRORS, problem_of

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """Every error: ``detail`` says what is wrong (a list naming the fields, for a 422)."""

    detail: Any


def _documented(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


_RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}}}

#: The errors any route may answer, declared once for the OpenAPI document.
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _documented(
        "The body is not valid JSON, or the database cannot take the write as asked "
        "(DynamoDB: more than 100 new rows at once, a number beyond its range)."
    ),
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
        "headers": _RETRY_AFTER,
    },
    503: {
        **_documented(
            "The database is unreachable, or too many bodies are in flight; nothing was "
            "written. Try again after Retry-After seconds."
        ),
        "headers": _RETRY_AFTER,
    },
}

CONFLICT: dict[int | str, dict[str, Any]] = {
    409: _documented("A row with this key exists already; nothing was written.")
}
PRECONDITION_FAILED: dict[int | str, dict[str, Any]] = {
    412: {
        **_documented(
            "If-Match named a version the row is no longer at (or a row that is "
            "not there); nothing was written. ETag: the row's current version."
        ),
        "headers": {"ETag": {"schema": {"type": "string"}}},
    }
}


def problem(error: Exception) -> Response:
    """The answer to a domain error, from the one table (``twotier.problems``)."""
    told = problem_of(error)
    return error_response(told.status, told.detail, told.headers or None)


async def _problem(_request: Request, exc: Exception) -> Response:
    return problem(exc)


def install_error_handlers(app: FastAPI) -> None:
    from fastapi.exceptions import RequestValidationError

    async def validation_error(_request: Request, exc: Exception) -> Response:
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

    app.add_exception_handler(RequestValidationError, validation_error)
    for kind in DOMAIN_ERRORS:
        app.add_exception_handler(kind, _problem)
