"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from twotier.access.keyring import Principal
from twotier.access.keys import Role
from twotier.api.access_guard import PRINCIPAL_KEY
from twotier.api.dependencies import ServiceDep

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database and the cache are reachable",
    responses={
        503: {
            "description": "A tier is unreachable; the body says which (and, to an admin key, why)."
        }
    },
)
async def readyz(service: ServiceDep, request: Request) -> JSONResponse:
    tiers = await service.readiness()
    broken = {name: state for name, state in tiers.items() if state != "ok"}
    if not broken:
        return JSONResponse({"status": "ok", **tiers})
    detail = "not ready: " + "; ".join(f"{name}: {state}" for name, state in broken.items())
    log.warning(detail)
    principal: Principal | None = request.scope.get(PRINCIPAL_KEY)
    if principal is None or not principal.role.allows(Role.ADMIN):
        # The reasons name hosts and ports: an anonymous probe learns only which tier.
        tiers = {name: "ok" if state == "ok" else "unavailable" for name, state in tiers.items()}
        detail = "not ready: " + ", ".join(broken)
    return JSONResponse({"detail": detail, **tiers}, status_code=503)
