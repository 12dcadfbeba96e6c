"""``POST /batch``: the seed's batch protocol over HTTP, one row of the endpoint table.

The body is the seed Lambda's event and the answer the object it would answer
(``twotier.batch``); the HTTP status is the event's statusCode. The body is parsed once, by
the body guard; a batch that says it writes, from a caller who may not, is turned away
before it is parsed at all (``screen``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter
from starlette.types import ASGIApp, Scope

from twotier import batch
from twotier.access.keys import Role
from twotier.api.access_guard import authorize_scope
from twotier.api.endpoints import Call, Documented, Endpoint, Routes, bypassing
from twotier.api.paths import app_path
from twotier.api.responses import Answer, batch_answer
from twotier.errors import Denied
from twotier.problems import problem_of
from twotier.resources import Resource
from twotier.resources.fields import FieldSpec, IntegerField

PATH = "/batch"

_EXAMPLES: dict[str, Any] = {
    "read by xp": {"value": {"USE_CACHE": "True", "REQUEST": "read", "SQLS": [17, 42]}},
    "read by id": {"value": {"USE_CACHE": "False", "REQUEST": "read", "KEY": "id", "SQLS": [1]}},
    "write": {
        "value": {
            "USE_CACHE": "True",
            "REQUEST": "write",
            "SQLS": [
                {"name": "Ada", "hero": "Captain Ada", "power": "math", "xp": 5, "color": "blue"}
            ],
        }
    },
}


def batch_endpoint(resources: Mapping[str, Resource], default: str, max_items: int) -> Routes:
    async def run(call: Call) -> Answer:
        scope = call.scope
        status, body, outcome = await batch.serve(
            call.service,
            call.body,
            max_items,
            lambda role: authorize_scope(scope, role),
            lambda: bypassing(scope),
        )
        return batch_answer(status, body, outcome)

    return Routes(
        None,
        collection={
            "POST": Endpoint(
                "POST",
                PATH,
                "run_batch",
                run,
                "Run a seed batch event",
                "seed protocol",
                any_body=True,
                body_schema=event_schema(resources, default, max_items),
                body_examples=_EXAMPLES if default == "heroes" else {},
                description="Takes the seed Lambda's event as the body and answers the same "
                "object it would: `{statusCode, body}`. The HTTP status is the event's "
                f"statusCode. `RESOURCE` names the resource (default: {default}).",
                answers={
                    200: Documented('`{"statusCode": 200, "body": [rows] | "write success"}`'),
                    400: Documented('A malformed event: `{"statusCode": 400, "body": {"detail"}}`'),
                    409: Documented("A write's key exists already; nothing was written."),
                    503: Documented("The database is unreachable; nothing was written."),
                },
            )
        },
    )


def event_schema(resources: Mapping[str, Resource], default: str, max_items: int) -> dict[str, Any]:
    """The batch event as JSON Schema: for each resource, a read by each of its lookup
    fields and by its key, and a write (``RESOURCE`` may be left out for ``default``)."""
    use_cache = {"oneOf": [{"type": "boolean"}, {"enum": ["True", "False", "true", "false"]}]}

    def values(resource: Resource, name: str) -> dict[str, Any]:
        spec = resource.field(name)
        schema = _schema_of(spec)
        if not isinstance(spec, IntegerField):
            return schema
        low, high = spec.bounds
        if name == resource.key and resource.auto_key:
            low = max(low, 1)
            schema = schema | {"minimum": low}
        # Numbers, or (as seed clients read them from a CSV) digit strings.
        digits = len(str(high)) - 1
        pattern = f"^[1-9][0-9]{{0,{digits - 1}}}$" if low >= 1 else f"^[0-9]{{1,{digits}}}$"
        if low >= 0:
            return {"oneOf": [schema, {"type": "string", "pattern": pattern}]}
        return schema

    def event(
        resource: Resource, request: str, items: dict[str, Any], key: str | None
    ) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "USE_CACHE": use_cache,
            "REQUEST": {"const": request},
            "SQLS": {"type": "array", "items": items, "maxItems": max_items},
            "RESOURCE": {"const": resource.name},
        }
        required = ["USE_CACHE", "REQUEST", "SQLS"]
        if resource.name != default:
            required.append("RESOURCE")
        if key is not None:
            first = key == ([*resource.lookups, resource.key][0])
            properties["KEY"] = {"enum": [key]} if first else {"const": key}
            if not first:
                required.append("KEY")
        return {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }

    events = []
    for resource in resources.values():
        for name in [*resource.lookups, resource.key]:
            events.append(event(resource, "read", values(resource, name), name))
        events.append(event(resource, "write", resource.create_model.model_json_schema(), None))
    # anyOf: an event may fit more than one form (a default resource named or not).
    return {"anyOf": events}


def _schema_of(spec: FieldSpec) -> dict[str, Any]:
    schema: dict[str, Any] = TypeAdapter(spec.value_type()).json_schema()
    return schema


#: A batch event that says it writes, as its raw JSON has it.
_DECLARES_A_WRITE = re.compile(rb'"REQUEST"\s*:\s*"write"')


def screen(scope: Scope, body: bytes) -> ASGIApp | None:
    """A batch whose body says it writes, from a caller who may not write, is answered at
    once, before its body is parsed (the body guard's screen), as ``batch.serve`` would
    answer it. Only refuses: a body that does not say so plainly is parsed, and the parsed
    event is judged as before."""
    if scope["method"] != "POST" or app_path(scope) != PATH:
        return None
    if _DECLARES_A_WRITE.search(body) is None:
        return None
    try:
        authorize_scope(scope, Role.WRITE)
    except Denied as error:
        told = problem_of(error)
        return batch_answer(told.status, batch.error_body(told.status, told.detail), None)
    return None
