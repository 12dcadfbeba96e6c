"""The seed's batch protocol, shared by ``POST /batch`` and the Lambda entrypoint.

An event is ``{"USE_CACHE": "True" | "False", "REQUEST": "read" | "write", "SQLS": [...]}``,
with an optional ``"KEY": "xp" | "id"`` for reads (``xp`` by default). The answer is
``{"statusCode": 200, "body": [rows]}`` for a read, ``{"statusCode": 200, "body":
"write success"}`` for a write, and ``{"statusCode": 4xx/5xx, "body": {"detail": ...}}`` for an
event that cannot be served (in which case nothing was written).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from twotier.access.keys import Role
from twotier.access.rules import Denied
from twotier.heroes import FIELDS, UINT_MAX, HeroIn, whole_number
from twotier.policy import AnswerTooLarge, CachePolicy, Outcome
from twotier.store.base import StoreUnavailable


class BatchError(Exception):
    """An event that cannot be served; ``status`` is the statusCode to answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


_SEED_DIGITS = len(str(UINT_MAX))


def _seed_int(value: object) -> object:
    # Seed clients send numbers or digit strings (values read from a CSV); never booleans.
    # Only ASCII digits are digits here ("²".isdigit() is true, and int() refuses it), and a
    # string too long to be in range is not converted at all: validation says it is too
    # large, instead of int() saying how to raise Python's digit limit.
    if isinstance(value, str):
        digits = value.strip()
        if digits.isascii() and digits.isdigit():
            return int(digits) if len(digits) <= _SEED_DIGITS else UINT_MAX + 1
    return whole_number(value)


def _seed_bool(value: object) -> object:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


SeedInt = Annotated[int, Field(strict=True, ge=0, le=UINT_MAX), BeforeValidator(_seed_int)]
SeedBool = Annotated[bool, BeforeValidator(_seed_bool), Field(strict=True)]


class BatchEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    USE_CACHE: SeedBool
    REQUEST: Literal["read", "write"]
    SQLS: list[Any]
    KEY: Literal["xp", "id"] = "xp"


def _hero(row: object) -> object:
    """A hero of a write: an object, or an array in the seed's column order (no id)."""
    if isinstance(row, list | tuple) and len(row) == len(FIELDS):
        row = dict(zip(FIELDS, row, strict=True))
    if isinstance(row, dict) and "xp" in row:
        row = row | {"xp": _seed_int(row["xp"])}
    return row


def _describe(error: ValidationError, prefix: tuple[str, ...] = ()) -> str:
    problems = [
        ".".join(str(part) for part in (*prefix, *e["loc"])) + f": {e['msg']}"
        for e in error.errors()[:5]
    ]
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


_KEYS: TypeAdapter[list[int]] = TypeAdapter(list[SeedInt])
_HEROES: TypeAdapter[list[HeroIn]] = TypeAdapter(list[HeroIn])


@dataclass(frozen=True, slots=True)
class BatchRequest:
    use_cache: bool
    #: What a read looks rows up by; None for a write.
    read_by: Literal["xp", "id"] | None
    keys: list[int] = field(default_factory=list)
    heroes: list[HeroIn] = field(default_factory=list)


def parse(event: object, max_items: int) -> BatchRequest:
    """Validate an event, or raise BatchError saying what is wrong with it."""
    if not isinstance(event, dict):
        raise BatchError(400, "the event must be a JSON object with USE_CACHE, REQUEST and SQLS")
    try:
        parsed = BatchEvent.model_validate(event)
    except ValidationError as error:
        raise BatchError(400, _describe(error)) from None
    if len(parsed.SQLS) > max_items:
        raise BatchError(400, f"SQLS has {len(parsed.SQLS)} items; at most {max_items} allowed")
    try:
        if parsed.REQUEST == "read":
            keys = _KEYS.validate_python(parsed.SQLS)
            if parsed.KEY == "id" and 0 in keys:
                raise BatchError(400, "SQLS: ids start at 1")
            return BatchRequest(parsed.USE_CACHE, parsed.KEY, keys=keys)
        if "KEY" in event:
            raise BatchError(400, "KEY applies to reads only")
        heroes = _HEROES.validate_python([_hero(row) for row in parsed.SQLS])
    except ValidationError as error:
        raise BatchError(400, _describe(error, ("SQLS",))) from None
    return BatchRequest(parsed.USE_CACHE, None, heroes=heroes)


#: Raises Denied unless the caller may make a request that needs the role.
Authorize = Callable[[Role], None]


async def serve(
    policy: CachePolicy, event: object, max_items: int, authorize: Authorize | None = None
) -> tuple[int, bytes, Outcome | None]:
    """Answer an event: (statusCode, the JSON answer object, how a read was served).

    ``authorize`` is asked before the event's rows are looked at, so a caller without the
    role learns nothing from validation errors. Direct Lambda invocations pass none: IAM
    decides who may invoke the function."""
    try:
        if authorize is not None:
            writes = isinstance(event, dict) and event.get("REQUEST") == "write"
            authorize(Role.WRITE if writes else Role.READ)
        request = parse(event, max_items)
        if request.read_by is None:
            await policy.create_many(request.heroes)
            return 200, b'{"statusCode":200,"body":"write success"}', None
        if request.read_by == "id":
            served = await policy.read_many(request.keys, use_cache=request.use_cache)
        else:
            served = await policy.read_by_xp(request.keys, use_cache=request.use_cache)
        return 200, b'{"statusCode":200,"body":' + (served.body or b"[]") + b"}", served.outcome
    except (BatchError, Denied) as error:
        return error.status, error_body(error.status, error.detail), None
    except AnswerTooLarge as error:
        setting = "BATCH_MAX_ROWS" if error.what == "rows" else "BATCH_MAX_ANSWER_BYTES"
        detail = (
            f"{error} (TWOTIER_{setting}): ask for fewer values in SQLS per request, "
            "or repeat a value fewer times"
        )
        return 400, error_body(400, detail), None
    except StoreUnavailable as error:
        return 503, error_body(503, str(error)), None


def error_body(status: int, detail: str) -> bytes:
    """The answer to an event that cannot be served."""
    return orjson.dumps({"statusCode": status, "body": {"detail": detail}})
