"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from twotier.api.dependencies import PolicyDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database and the cache are reachable",
    responses={503: {"description": "A tier is unreachable; the body says which."}},
)
async def readyz(policy: PolicyDep) -> JSONResponse:
    tiers = await policy.readiness()
    broken = {name: state for name, state in tiers.items() if state != "ok"}
    if broken:
        detail = "not ready: " + "; ".join(f"{name}: {state}" for name, state in broken.items())
        return JSONResponse({"detail": detail, **tiers}, status_code=503)
    return JSONResponse({"status": "ok", **tiers})
