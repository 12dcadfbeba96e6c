"""What routes get through ``Depends``: the service built at start-up, the cache wish.

FastAPI runs plain ``def`` dependencies in a thread pool; these are ``async def`` so that a
cached read never hops threads.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request, Security
from fastapi.security import APIKeyHeader
from starlette.types import Scope

from twotier.access.rules import Access
from twotier.api.access_guard import PRINCIPAL_KEY
from twotier.api.cache_control import wants_cache
from twotier.service import Service


async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def use_cache(
    request: Request,
    cache_control: Annotated[
        str | None,
        Header(
            description="`no-cache` (or `no-store`) serves the read from the database (without "
            "a key, within TWOTIER_ANONYMOUS_BYPASS_PER_SECOND: else 429)."
        ),
    ] = None,
) -> bool:
    # The parameter documents the header; every line of it is read, as the hot path does.
    if wants_cache(request.scope["headers"]):
        return True
    await bypassing(request.scope)
    return False


async def bypassing(scope: Scope) -> None:
    """A read that skips the cache: Denied (429) past the budget of those without a key."""
    access: Access | None = getattr(scope["app"].state, "access", None)
    if access is not None:
        await access.may_bypass(scope.get(PRINCIPAL_KEY))


ServiceDep = Annotated[Service, Depends(get_service)]
UseCacheDep = Annotated[bool, Depends(use_cache)]

#: Declares the key in the OpenAPI document (and Swagger UI's "Authorize"); the checks
#: themselves run earlier, in api.access_guard, for the hot path as for the routes.
API_KEY = Security(
    APIKeyHeader(
        name="X-API-Key",
        auto_error=False,
        description="An API key (`twotier keys create`). Writes need role write, /admin "
        "needs admin; reads need read when TWOTIER_REQUIRE_KEY_FOR_READS is on.",
    )
)
