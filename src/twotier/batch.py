"""The seed's batch protocol, shared by ``POST /batch`` and the Lambda entrypoint.

An event is ``{"USE_CACHE": "True" | "False", "REQUEST": "read" | "write", "SQLS": [...]}``.
It addresses the seed's heroes, or with ``"RESOURCE": NAME`` another declared resource.
A read looks rows up by ``"KEY"``: one of the resource's lookup fields (the first one by
default: the heroes' ``xp``) or its key (``"id"``). The answer is ``{"statusCode": 200,
"body": [rows]}`` for a read, ``{"statusCode": 200, "body": "write success"}`` for a write, and
``{"statusCode": 4xx/5xx, "body": {"detail": ...}}`` for an event that cannot be served (in
which case nothing was written).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from twotier.access.keys import Role
from twotier.errors import RequestError
from twotier.policy import Outcome
from twotier.problems import DOMAIN_ERRORS, problem_of
from twotier.resources import Resource, default_resource, load_resources
from twotier.resources.fields import IntegerField, whole_number
from twotier.service import Service
from twotier.telemetry import CURRENT_REQUEST


class BatchError(RequestError):
    """An event that cannot be served; ``status`` is the statusCode to answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


_SEED_DIGITS = len(str(2**63))


def _seed_int(value: object) -> object:
    # Seed clients send numbers or digit strings (values read from a CSV); never booleans.
    # Only ASCII digits are digits here ("²".isdigit() is true, and int() refuses it), and a
    # string too long to be in range is not converted at all: validation says it is too
    # large, instead of int() saying how to raise Python's digit limit.
    if isinstance(value, str):
        digits = value.strip()
        if digits.isascii() and digits.isdigit():
            return int(digits) if len(digits) <= _SEED_DIGITS else 2**64
    return whole_number(value)


def _seed_bool(value: object) -> object:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


SeedBool = Annotated[bool, BeforeValidator(_seed_bool), Field(strict=True)]


class BatchEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    USE_CACHE: SeedBool
    REQUEST: Literal["read", "write"]
    SQLS: list[Any]
    # Strings when given (a null is refused, as the schema says); "" stands for "not given".
    KEY: str = ""
    RESOURCE: str = ""


def _describe(error: ValidationError, prefix: tuple[str, ...] = ()) -> str:
    problems = [
        ".".join(str(part) for part in (*prefix, *e["loc"])) + f": {e['msg']}"
        for e in error.errors()[:5]
    ]
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


@dataclass(frozen=True, slots=True)
class BatchRequest:
    resource: str
    use_cache: bool
    #: The field a read looks rows up by (the key, or a lookup field); None for a write.
    read_by: str | None
    values: list[Any] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)


@lru_cache(maxsize=64)
def _values_of(resource: Resource, name: str) -> TypeAdapter[list[Any]]:
    """The checks of one field's values in SQLS (numbers may come as digit strings)."""
    if name == resource.key and resource.composite:  # each key as its text: "3,1027"
        return TypeAdapter(list[resource.key_type])  # type: ignore[name-defined]
    spec = resource.field(name)
    value: Any = spec.value_type()
    if isinstance(spec, IntegerField):
        value = Annotated[value, BeforeValidator(_seed_int)]
    return TypeAdapter(list[value])


@lru_cache(maxsize=64)
def _rows_of(resource: Resource) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[resource.create_model])  # type: ignore[name-defined]


def _row(resource: Resource, row: object) -> object:
    """A row of a write: an object, or an array in the resource's field order (the seed's
    column order, without the id)."""
    names = [spec.name for spec in resource.writable]
    if isinstance(row, list | tuple) and len(row) == len(names):
        row = dict(zip(names, row, strict=True))
    if isinstance(row, dict):
        for spec in resource.writable:
            if isinstance(spec, IntegerField) and spec.name in row:
                row = row | {spec.name: _seed_int(row[spec.name])}
    return row


def parse(
    event: object, max_items: int, resources: Mapping[str, Resource] | None = None
) -> BatchRequest:
    """Validate an event against the declared ``resources`` (the built-in heroes when
    None), or raise BatchError saying what is wrong with it."""
    if resources is None:
        resources = {resource.name: resource for resource in load_resources(None)}
    if not isinstance(event, dict):
        raise BatchError(400, "the event must be a JSON object with USE_CACHE, REQUEST and SQLS")
    try:
        parsed = BatchEvent.model_validate(event)
    except ValidationError as error:
        raise BatchError(400, _describe(error)) from None
    default = default_resource(list(resources.values()))
    given = parsed.model_fields_set
    name = parsed.RESOURCE if "RESOURCE" in given else default
    resource = resources.get(name)
    if resource is None:
        known = ", ".join(resources)
        raise BatchError(400, f"RESOURCE: no resource {name!r} (resources: {known})")
    if len(parsed.SQLS) > max_items:
        raise BatchError(400, f"SQLS has {len(parsed.SQLS)} items; at most {max_items} allowed")
    try:
        if parsed.REQUEST == "read":
            readable = [*resource.lookups, resource.key]
            read_by = parsed.KEY if "KEY" in given else readable[0]
            if read_by not in readable:
                choices = " or ".join(repr(f) for f in readable)
                raise BatchError(400, f"KEY: Input should be {choices}")
            automatic = read_by == resource.key and resource.auto_key
            if automatic and any(v in (0, "0") for v in parsed.SQLS if not isinstance(v, bool)):
                raise BatchError(400, f"SQLS: {resource.key}s start at 1")
            values = _values_of(resource, read_by).validate_python(parsed.SQLS)
            return BatchRequest(name, parsed.USE_CACHE, read_by, values=values)
        if "KEY" in given:
            raise BatchError(400, "KEY applies to reads only")
        rows = _rows_of(resource).validate_python([_row(resource, row) for row in parsed.SQLS])
    except ValidationError as error:
        raise BatchError(400, _describe(error, ("SQLS",))) from None
    return BatchRequest(name, parsed.USE_CACHE, None, rows=[resource.given(row) for row in rows])


#: Raises Denied unless the caller may make a request that needs the role.
Authorize = Callable[[Role], None]


async def serve(
    service: Service,
    event: object,
    max_items: int,
    authorize: Authorize | None = None,
    bypass: Callable[[], Awaitable[None]] | None = None,
) -> tuple[int, bytes, Outcome | None]:
    """Answer an event: (statusCode, the JSON answer object, how a read was served).

    ``authorize`` is asked before the event's rows are looked at, so a caller without the
    role learns nothing from validation errors. Direct Lambda invocations pass none: IAM
    decides who may invoke the function. ``bypass`` is awaited before a read that skips
    the cache (USE_CACHE false): Denied past its budget."""
    try:
        if authorize is not None:
            writes = isinstance(event, dict) and event.get("REQUEST") == "write"
            authorize(Role.WRITE if writes else Role.READ)
        request = parse(event, max_items, service.resources)
        record = CURRENT_REQUEST.get()
        if record is not None:  # the access line says which resource the event addressed
            record.resource = request.resource
        policy = service.resource(request.resource)
        if request.read_by is not None and not request.use_cache and bypass is not None:
            await bypass()
        if request.read_by is None:
            await policy.create_many(request.rows)
            return 200, b'{"statusCode":200,"body":"write success"}', None
        if request.read_by == policy.resource.key:
            served = await policy.read_many(request.values, use_cache=request.use_cache)
        else:
            served = await policy.lookup(
                request.read_by, request.values, use_cache=request.use_cache
            )
        return 200, b'{"statusCode":200,"body":' + (served.body or b"[]") + b"}", served.outcome
    except BatchError as error:
        return error.status, error_body(error.status, error.detail), None
    except DOMAIN_ERRORS as error:
        told = problem_of(error)
        return told.status, error_body(told.status, told.detail), None


def error_body(status: int, detail: str) -> bytes:
    """The answer to an event that cannot be served."""
    return orjson.dumps({"statusCode": status, "body": {"detail": detail}})
