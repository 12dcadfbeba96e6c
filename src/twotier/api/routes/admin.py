"""``/admin/keys``: API keys managed over HTTP, by holders of an ``admin`` key (the guard
checks the role before these run); the same operations as ``twotier keys``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import AfterValidator, BaseModel, Field

from twotier.access.keys import NAME_MAX, NAME_PATTERN, KeyRecord, Role, check_key_name
from twotier.api.dependencies import API_KEY, ServiceDep
from twotier.api.errors import COMMON_ERRORS, ErrorBody
from twotier.api.responses import error_response

router = APIRouter(
    prefix="/admin/keys", tags=["admin"], responses=COMMON_ERRORS, dependencies=[API_KEY]
)


class KeyIn(BaseModel):
    name: Annotated[
        str,
        Field(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN),
        AfterValidator(check_key_name),
    ]
    role: Role


class KeyOut(BaseModel):
    """A key as listed: never the key itself."""

    id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, record: KeyRecord) -> KeyOut:
        return cls(
            id=record.id,
            name=record.name,
            role=record.role,
            created_at=record.created_at,
            revoked_at=record.revoked_at,
        )


class NewKey(KeyOut):
    key: str = Field(description="The key to send as X-API-Key. Shown this once only.")


@router.get("", summary="List API keys")
async def list_keys(service: ServiceDep) -> list[KeyOut]:
    return [KeyOut.of(record) for record in await service.list_keys()]


@router.post(
    "",
    status_code=201,
    summary="Create an API key",
    responses={201: {"headers": {"Cache-Control": {"schema": {"type": "string"}}}}},
)
async def add_key(wanted: KeyIn, service: ServiceDep, response: Response) -> NewKey:
    record, token = await service.create_key(wanted.name, wanted.role)  # works here at once
    # The answer holds a secret: no cache on the way (a proxy, the browser) may keep it.
    response.headers["Cache-Control"] = "no-store"
    return NewKey(**KeyOut.of(record).model_dump(), key=token)


@router.delete(
    "/{key_id}",
    status_code=204,
    summary="Revoke an API key",
    responses={404: {"model": ErrorBody, "description": "No such active key."}},
)
async def revoke_key(key_id: str, service: ServiceDep) -> Response:
    # This process stops taking the key at once; the others within TWOTIER_API_KEY_REFRESH.
    if not await service.revoke_key(key_id):
        return error_response(404, f"no active key {key_id}")
    return Response(status_code=204)
