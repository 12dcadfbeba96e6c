"""The query language of a list, ``GET /{resource}``: its parameters, and the query they make.

- ``field=value``: exactly that value (the key, the lookups, the declared filters);
- ``field[gt]=``, ``[gte]``, ``[lt]``, ``[lte]``: compared with a value (the key, the declared
  ranges; text byte for byte);
- ``field[in]=a,b``: one of the values, separated by commas as in CSV (a value holding a comma
  or a double quote is quoted: ``"a,b"``);
- ``field[prefix]=Ca``: starts with the text, byte for byte (the declared prefixes);
- ``field[null]=true`` or ``false``: is null, or is not (the nullable ones of those fields);
- ``order=field`` or ``order=-field``: by the field, then by the key, descending with ``-``
  (the key, and the declared ranges and prefixes that are never null);
- ``fields=a,b``: what each row carries;
- ``after``: where the page starts: a key when by key, the previous page's ``next_after``
  cursor in any other order (``pages``);
- ``limit``: rows per page.

Each is a parameter of the list's row in the endpoint table, so the dispatcher converts it,
refuses any other, and the OpenAPI document describes it. What no index serves is refused:
comparisons and prefixes on one field besides the key, whose order the page then takes (its
index's), and an order by another field with them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)

from twotier.api.query_parameter import Parameter
from twotier.config import Settings
from twotier.errors import BadCursor
from twotier.pages import Cursors
from twotier.resources import Resource
from twotier.resources.fields import IntegerField, StringField, integer_text
from twotier.store.base import OPERATORS, Condition, Query

#: The most values one ``[in]`` takes.
MOST_VALUES = 100
_RANGES = frozenset({"gt", "gte", "lt", "lte", "prefix"})
_DOCS = {
    "gt": "Rows whose {field} is above this.",
    "gte": "Rows whose {field} is this or above.",
    "lt": "Rows whose {field} is below this.",
    "lte": "Rows whose {field} is this or below.",
    "in": "Rows whose {field} is one of these, separated by commas (a value holding a comma "
    "or a double quote in double quotes, as in CSV), at most " + str(MOST_VALUES) + ".",
    "prefix": "Rows whose {field} starts with this, byte for byte.",
    "null": "true: rows whose {field} is null; false: those whose {field} is not.",
}

Problem = dict[str, Any]


def list_parameters(resource: Resource, settings: Settings) -> tuple[Parameter, ...]:
    """A list's parameters: each filter, each operator on each field that takes it,
    ``order``, ``fields``, ``after`` and ``limit``."""
    filters = tuple(
        Parameter(name, TypeAdapter(resource.field(name).query_type()))
        for name in resource.filterable
    )
    if settings.on_dynamodb:
        return (*filters, page_fields(resource), key_after(resource), page_limit(settings))
    conditions = tuple(
        Parameter(f"{name}[{op}]", _adapter(resource, name, op), None, _DOCS[op].format(field=name))
        for name, ops in resource.operators.items()
        for op in ops
    )
    orderable = ", ".join(resource.orderable)
    # Each order served: a field, and but for the key itself or a composite key's parts,
    # the same with the key named as its tiebreak.
    tiebreak = None if resource.composite else resource.key
    orders = [
        order
        for name in resource.orderable
        for order in (
            (name, f"-{name}")
            if tiebreak is None or name == tiebreak
            else (name, f"-{name}", f"{name},{tiebreak}", f"-{name},-{tiebreak}")
        )
    ]
    order = Parameter(
        "order",
        TypeAdapter(
            Annotated[
                str,
                AfterValidator(lambda text: _order(resource, text)),
                WithJsonSchema({"type": "string", "enum": orders}),
            ]
        ),
        None,
        f"By one field, then by {resource.key}; descending with a leading `-` (`-xp`). "
        f"Fields: {orderable}. A page with comparisons or a prefix comes in that field's "
        "order unless this says otherwise.",
    )
    after = Parameter(
        "after",
        TypeAdapter(Annotated[str, Field(min_length=1, max_length=1024)]),
        None,
        "Where the page starts: the previous page's `next_after` (a key when by key, a "
        "cursor in any other order).",
    )
    return (*filters, *conditions, order, page_fields(resource), after, page_limit(settings))


def page_fields(resource: Resource) -> Parameter:
    one = "|".join(re.escape(name) for name in resource.columns)
    return Parameter(
        "fields",
        TypeAdapter(
            Annotated[
                str,
                AfterValidator(lambda text: _fields(resource, text)),
                WithJsonSchema({"type": "string", "pattern": f"^({one})(,({one}))*$"}),
            ]
        ),
        None,
        "The fields each row carries, separated by commas (default: every one).",
    )


def page_limit(settings: Settings) -> Parameter:
    return Parameter(
        "limit",
        TypeAdapter(
            Annotated[int, Field(ge=1, le=settings.page_limit_max), BeforeValidator(integer_text)]
        ),
        settings.page_limit_default,
        "Rows per page.",
    )


def key_after(resource: Resource) -> Parameter:
    """``after`` of a page by key: the last key of the page before."""
    doc = "Only keys above this (`next_after`)."
    if resource.composite:
        order = ", then ".join(resource.key_fields)
        doc = f"Only keys after this one (`next_after`), ordered by {order}."
    return Parameter("after", _key_adapter(resource), None, doc)


def _key_adapter(resource: Resource) -> TypeAdapter[Any]:
    if isinstance(resource.key_field, IntegerField):
        return TypeAdapter(Annotated[int, Field(ge=0, le=2**63 - 1), BeforeValidator(integer_text)])
    return resource.key_text


def refused(resource: Resource, settings: Settings) -> dict[str, str]:
    """The parameters a list refuses with a reason of their own: a field no index serves,
    an operator a field does not take, an order DynamoDB does not keep."""
    filterable = ", ".join(resource.filterable)
    reasons = {
        name: f"cannot be filtered: no index serves it (the fields that can be: {filterable})"
        for name in resource.columns
        if name not in resource.filterable
    }
    if settings.on_dynamodb:
        reasons["order"] = "lists on DynamoDB come by key, or in a scan's order"
        for name in resource.columns:
            for op in OPERATORS:
                reasons[f"{name}[{op}]"] = "lists on DynamoDB take exact filters only"
        return reasons
    for name in resource.columns:
        takes = resource.operators.get(name, ())
        for op in OPERATORS:
            if op not in takes:
                reasons[f"{name}[{op}]"] = (
                    f"{name} takes {', '.join(takes)}" if takes else _not_queried(resource, name)
                )
    return reasons


def _not_queried(resource: Resource, name: str) -> str:
    fields = ", ".join(resource.operators)
    return f"{name} takes no operator (the fields that do: {fields})"


def _adapter(resource: Resource, name: str, op: str) -> TypeAdapter[Any]:
    spec = resource.field(name)
    if op == "null":
        return TypeAdapter(bool)
    if op == "prefix":
        longest = spec.max_length if isinstance(spec, StringField) else None
        return TypeAdapter(
            Annotated[str, Field(min_length=1, max_length=longest, pattern="^[^\\x00]*$")]
        )
    if op == "in":
        one = spec.query_type()
        items = TypeAdapter(one).json_schema()
        values: Any = Annotated[
            tuple[one, ...],  # type: ignore[valid-type]
            BeforeValidator(_csv),
            Field(min_length=1, max_length=MOST_VALUES),
            WithJsonSchema(
                {"type": "array", "items": items, "minItems": 1, "maxItems": MOST_VALUES}
            ),
        ]
        return TypeAdapter(values)
    if name == resource.key:
        return _key_adapter(resource)
    return TypeAdapter(spec.query_type())


def _csv(text: Any) -> Any:
    """The values of an ``[in]``, separated by commas as in CSV (RFC 4180's fields, on one
    line): a value in double quotes may hold commas, and a double quote written twice;
    every other character, a line break too, is the value's own."""
    if not isinstance(text, str):
        return text
    values: list[str] = []
    at = 0
    while True:
        if text.startswith('"', at):
            end = at + 1
            value: list[str] = []
            while True:
                close = text.find('"', end)
                if close < 0:
                    raise ValueError("not values separated by commas: a quote is not closed")
                value.append(text[end:close])
                if text.startswith('"', close + 1):
                    value.append('"')
                    end = close + 2
                    continue
                at = close + 1
                break
            values.append("".join(value))
            if at == len(text):
                return values
            if text[at] != ",":
                raise ValueError("not values separated by commas: a quoted value ends before ,")
            at += 1
            continue
        comma = text.find(",", at)
        plain = text[at:] if comma < 0 else text[at:comma]
        if '"' in plain:
            raise ValueError('not values separated by commas: a " outside quotes')
        values.append(plain)
        if comma < 0:
            return values if text else []
        at = comma + 1


def _order(resource: Resource, text: str) -> str:
    """``order``, checked: one field lists may be ordered by (then, if named, the key),
    with ``-`` before each or none."""
    names = text.split(",")
    descending = {name.startswith("-") for name in names}
    plain = [name.removeprefix("-") for name in names]
    orderable = ", ".join(resource.orderable)
    for name in plain:
        if name not in resource.orderable:
            if name in resource.columns:
                raise ValueError(
                    f"{name} cannot be ordered by (no index serves it, or it may be null); "
                    f"the fields that can be: {orderable}"
                )
            raise ValueError(f"{name!r} is not a field; the fields to order by: {orderable}")
    if len(set(plain)) != len(plain):
        raise ValueError("names a field twice")
    if len(descending) > 1:
        raise ValueError("mixes directions: every field ascending, or every one with -")
    if len([name for name in plain if name != resource.key]) > 1 or (
        len(plain) > 1 and plain[-1] != resource.key
    ):
        raise ValueError(f"orders by one field, then by {resource.key} (no index serves several)")
    return text


def _fields(resource: Resource, text: str) -> str:
    """``fields``, checked: each a field (one named twice is there once)."""
    names = text.split(",")
    for name in names:
        if name not in resource.columns:
            raise ValueError(f"{name!r} is not a field (the fields: {', '.join(resource.columns)})")
    return ",".join(dict.fromkeys(names))


def row_query(
    resource: Resource, given: Mapping[str, Any], cursors: Cursors
) -> Query | list[Problem]:
    """The query a list's converted parameters make, or the problems that refuse it."""
    filters: list[tuple[str, Any]] = []
    conditions: list[Condition] = []
    for name, value in given.items():
        if value is None or name in ("order", "fields", "after", "limit"):
            continue
        field, bracket, op = name.partition("[")
        if bracket:
            conditions.append(Condition(field, op.rstrip("]"), value))
        else:
            filters.append((name, value))
    ranging = [c for c in conditions if c.op in _RANGES and c.field != resource.key]
    ranged = list(dict.fromkeys(c.field for c in ranging))
    if len(ranged) > 1:
        second = next(c for c in ranging if c.field == ranged[1])
        return [
            _problem(
                f"{second.field}[{second.op}]",
                f"compares {ranged[0]} already: comparisons and prefixes are on one field "
                f"besides {resource.key} (no index serves two)",
            )
        ]
    order: tuple[str, ...] = ()
    descending = False
    if given.get("order") is not None:
        names = [name.removeprefix("-") for name in given["order"].split(",")]
        descending = given["order"].startswith("-")
        order = tuple(name for name in names if name != resource.key)
        if ranged and order != tuple(ranged):
            by = order[0] if order else resource.key
            return [
                _problem(
                    "order",
                    f"by {by} with comparisons on {ranged[0]}: no index serves both; order "
                    f"by {ranged[0]}, or leave order out",
                )
            ]
    elif ranged:
        order = tuple(ranged)  # the order of the index that serves the comparisons
    fields = tuple(given["fields"].split(",")) if given.get("fields") else ()
    query = Query(
        tuple(filters),
        limit=given["limit"],
        conditions=tuple(conditions),
        order=order,
        descending=descending,
        fields=fields,
    )
    after = given.get("after")
    if after is None:
        return query
    if query.ordered:
        try:
            return replace(query, position=cursors.position(query, after))
        except BadCursor as bad:
            return [_problem("after", str(bad))]
    try:
        key = _key_adapter(resource).validate_python(after)
    except ValidationError as invalid:
        return [
            {"loc": ["query", "after", *p["loc"]], "msg": p["msg"], "type": p["type"]}
            for p in invalid.errors(include_url=False)
        ]
    return replace(query, after=key)


def _problem(name: str, message: str) -> Problem:
    return {"loc": ["query", name], "msg": message, "type": "invalid_query"}
