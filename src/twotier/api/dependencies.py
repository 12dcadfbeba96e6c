"""What FastAPI's own routes (admin, health) get through ``Depends``: the service built at
start-up; and the API key, declared for the OpenAPI document.

The dependencies are ``async def``: FastAPI runs plain ``def`` ones in a thread pool.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from twotier.service import Service


async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]

#: Declares the key in the OpenAPI document (and Swagger UI's "Authorize"); the checks
#: themselves run earlier, in api.access_guard, for every request.
KEY_DESCRIPTION = (
    "An API key (`twotier keys create`). Writes need role write, /admin needs admin; reads "
    "need read when TWOTIER_REQUIRE_KEY_FOR_READS is on."
)
API_KEY = Security(APIKeyHeader(name="X-API-Key", auto_error=False, description=KEY_DESCRIPTION))
