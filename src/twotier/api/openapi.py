"""The OpenAPI document: FastAPI's own routes (admin, health, metrics) as FastAPI describes
them, and every row of the endpoint table from the row itself.

A row's key, parameters and body are described by the same validators the dispatcher runs
(their JSON Schemas), its answers by the models it answers with, so the document cannot say
other than what is served. Which operations take a key without needing one follows from
the same rules the access guard applies.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import (
    get_openapi,
    validation_error_definition,
    validation_error_response_definition,
)
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from twotier.access.rules import AccessRules
from twotier.api.dependencies import KEY_DESCRIPTION
from twotier.api.endpoints import Documented, Endpoint
from twotier.api.errors import COMMON_ERRORS, ErrorBody

_REFS = "#/components/schemas/{model}"
_CACHE_CONTROL = {
    "name": "Cache-Control",
    "in": "header",
    "required": False,
    "description": "`no-cache` (or `no-store`) serves the read from the database (without a "
    "key, within TWOTIER_ANONYMOUS_BYPASS_PER_SECOND: else 429).",
    "schema": {"type": "string"},
}
_KEY_SCHEME = "APIKeyHeader"


def document(api: FastAPI, endpoints: Iterable[Endpoint], rules: AccessRules) -> dict[str, Any]:
    """The whole document."""
    rows = list(endpoints)
    spec = get_openapi(
        title=api.title, version=api.version, description=api.description, routes=api.routes
    )
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    refs = _schemas(rows, schemas)
    paths = spec.setdefault("paths", {})
    for row in rows:
        paths.setdefault(row.path, {})[row.method.lower()] = _operation(row, refs)
    schemas.setdefault("ValidationError", validation_error_definition)
    schemas.setdefault("HTTPValidationError", validation_error_response_definition)
    components.setdefault("securitySchemes", {})[_KEY_SCHEME] = {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": KEY_DESCRIPTION,
    }
    for path, operations in paths.items():
        for method, operation in operations.items():
            if "security" in operation and rules.role_for(method.upper(), path) is None:
                operation["security"] = [*operation["security"], {}]  # {}: optional
    spec["paths"] = dict(sorted(paths.items()))
    return spec


#: A model's reference (``{"$ref": …}``), by model and mode.
Refs = dict[tuple[Any, str], Any]


def _schemas(rows: list[Endpoint], schemas: dict[str, Any]) -> Refs:
    """The rows' models as components (bodies as they validate, answers as they are
    serialized); their references by model and mode."""
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {
        (ErrorBody, "serialization"): None
    }
    for row in rows:
        if row.body is not None:
            wanted[(row.body, "validation")] = None
        for answered in row.answers.values():
            if answered.model is not None:
                wanted[(answered.model, "serialization")] = None
    refs, defs = models_json_schema(list(wanted), ref_template=_REFS)
    schemas.update(defs.get("$defs", {}))
    return dict(refs.items())


def _operation(row: Endpoint, refs: Refs) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": [row.tag],
        "summary": row.summary,
        "operationId": row.name,
        "security": [{_KEY_SCHEME: []}],
    }
    if row.description:
        operation["description"] = row.description
    parameters = []
    if row.keyed:
        resource = row.resource
        assert resource is not None
        said = f"The {resource.singular}'s {resource.key}."
        schema = resource.key_text.json_schema()
        if resource.composite:
            said = (
                f"The {resource.singular}'s key: its {' and '.join(resource.key_fields)}, "
                f"in that order, separated by a comma."
            )
            schema = TypeAdapter(resource.key_field.value_type()).json_schema()
        parameters.append(
            {
                "name": resource.path_parameter,
                "in": "path",
                "required": True,
                "description": said,
                "schema": schema | {"description": said},
            }
        )
    for parameter in row.parameters:
        schema = parameter.adapter.json_schema()
        if parameter.default is not None:
            schema = schema | {"default": parameter.default}
        described: dict[str, Any] = (
            {"description": parameter.description} if parameter.description else {}
        )
        if schema.get("type") == "array":  # one parameter, its values separated by commas
            described |= {"style": "form", "explode": False}
        parameters.append(
            {"name": parameter.name, "in": "query", "required": False, "schema": schema} | described
        )
    if row.method == "GET" and row.resource is not None:
        parameters.append(_CACHE_CONTROL)
    if parameters:
        operation["parameters"] = parameters
    if row.body is not None:
        operation["requestBody"] = _json_body({"$ref": refs[(row.body, "validation")]["$ref"]})
    elif row.body_schema is not None:
        operation["requestBody"] = _json_body(dict(row.body_schema), row.body_examples)
    answers: dict[str, Any] = {}
    for status, answered in row.answers.items():
        answers[str(status)] = _answer(answered, refs)
    for code, common in COMMON_ERRORS.items():
        answers.setdefault(
            str(code),
            _answer(Documented(common["description"], ErrorBody, common.get("headers", {})), refs),
        )
    if row.keyed or row.parameters or row.body is not None:
        answers["422"] = {
            "description": "The key, a parameter or the body is not valid; `detail` names "
            "each problem.",
            "content": {
                "application/json": {"schema": {"$ref": _REFS.format(model="HTTPValidationError")}}
            },
        }
    operation["responses"] = dict(sorted(answers.items()))
    return operation


def _json_body(schema: dict[str, Any], examples: Any = None) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": schema}
    if examples:
        content["examples"] = examples
    return {"required": True, "content": {"application/json": content}}


def _answer(answered: Documented, refs: Refs) -> dict[str, Any]:
    described: dict[str, Any] = {"description": answered.description}
    if answered.model is not None:
        ref = refs[(answered.model, "serialization")]["$ref"]
        described["content"] = {"application/json": {"schema": {"$ref": ref}}}
    if answered.headers:
        described["headers"] = {name: dict(header) for name, header in answered.headers.items()}
    return described
