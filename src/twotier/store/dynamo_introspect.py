"""What ``db introspect`` reads of DynamoDB: each table (under the URL's ``table_prefix``) as
a declaration describes it.

A table's key is its partition key (and sort key: a composite key), typed by its attribute
definitions (``N`` an integer, ``S`` a string). DynamoDB keeps no schema beyond the keys, so
the other fields come from a sample of the table's items (``_SAMPLE``, strongly consistent):
each attribute by the type it holds (``S`` a string, ``N`` an integer where every sampled
value is whole, else a number; ``BOOL``, ``B`` binary), nullable where some sampled item
lacks it. An attribute of several types, a map, a list or a set is left out with why. The
lookup indexes twotier made (``by_<field>``) become lookups again, and a table whose ids
twotier hands out has its automatic id; another application's indexes are named in a
comment, as their items carry none of the index attributes twotier reads. Nothing is
changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twotier.errors import StoreRefused
from twotier.resources.introspected import Introspected
from twotier.store.dynamo_client import DynamoClient, DynamoTarget, error_code
from twotier.store.dynamo_items import INDEX_PREFIX, KEY_TEXT, VERSION, index_name
from twotier.store.dynamo_schema import KEYS_TABLE

#: Items read to learn a table's attributes.
_SAMPLE = 500
#: A string field's length when the sample says less: DynamoDB's own bound on a sort key.
_TEXT = 1024
_SCALARS = {"S": "string", "BOOL": "boolean", "B": "binary"}
#: What twotier does not serve: DynamoDB's own documents (a json field is kept as text, which
#: would turn the other application's map into a string) and sets.
_UNSERVED = {
    "M": "a map", "L": "a list", "SS": "a set of strings", "NS": "a set of numbers",
    "BS": "a set of binaries",
}  # fmt: skip


async def introspect(
    client: DynamoClient, target: DynamoTarget, tables: Sequence[str] | None, meta: str
) -> list[Introspected]:
    """Every table under the prefix but twotier's own (or those named); ``meta``: the
    table that holds twotier's id counters (a table whose ids twotier hands out has one)."""
    own = {target.table(KEYS_TABLE), meta}
    present = [
        name[len(target.table_prefix) :]
        for name in await _table_names(client)
        if name.startswith(target.table_prefix) and name not in own
    ]
    if tables is not None:
        missing = [name for name in tables if name not in present]
        if missing:
            raise StoreRefused(f"no table {missing[0]!r} here (tables: {', '.join(present)})")
        present = list(tables)
    return [await _table(client, target.table(name), name, meta) for name in present]


async def _table_names(client: DynamoClient) -> list[str]:
    names: list[str] = []
    arguments: dict[str, Any] = {}
    while True:
        answer = await client.call("list_tables", **arguments)
        names += answer.get("TableNames", [])
        start = answer.get("LastEvaluatedTableName")
        if not start:
            return names
        arguments["ExclusiveStartTableName"] = start


async def _table(client: DynamoClient, stored: str, name: str, meta: str) -> Introspected:
    described = (await client.call("describe_table", TableName=stored))["Table"]
    types = {a["AttributeName"]: a["AttributeType"] for a in described["AttributeDefinitions"]}
    keys = [part["AttributeName"] for part in described["KeySchema"]]
    fields: dict[str, dict[str, Any]] = {}
    for place, key in enumerate(keys):
        kind = types[key]
        if kind == "B":
            return Introspected(
                name, None, f"its key {key!r} is binary, which twotier cannot serve"
            )
        # DynamoDB's bounds: 2048 bytes a partition key, 1024 a sort key.
        longest = 2048 if place == 0 else 1024
        fields[key] = (
            {"type": "integer"} if kind == "N" else {"type": "string", "max_length": longest}
        )
    items = await _sample(client, stored)
    left_out: list[str] = []
    seen: dict[str, set[str]] = {}
    whole: dict[str, bool] = {}
    lengths: dict[str, int] = {}
    for item in items:
        for attribute, value in item.items():
            (kind,) = value
            seen.setdefault(attribute, set()).add(kind)
            if kind == "N":
                whole[attribute] = whole.get(attribute, True) and value["N"].lstrip("-").isdigit()
            if kind == "S":
                lengths[attribute] = max(lengths.get(attribute, 0), len(value["S"]))
    for attribute, kinds in seen.items():
        if attribute in keys or _twotiers(attribute):
            continue
        kinds.discard("NULL")
        nullable = any(attribute not in item or "NULL" in item[attribute] for item in items)
        if not kinds:
            left_out.append(f"attribute {attribute!r} holds only nulls in the items read")
            continue
        if len(kinds) != 1:
            left_out.append(f"attribute {attribute!r} holds {', '.join(sorted(kinds))} values")
            continue
        (kind,) = kinds
        if kind in _UNSERVED:
            left_out.append(f"attribute {attribute!r} holds {_UNSERVED[kind]}, not served yet")
            continue
        spec: dict[str, Any] = (
            {"type": "integer" if whole.get(attribute) else "number"}
            if kind == "N"
            else {"type": _SCALARS[kind]}
        )
        if kind == "S":
            spec["max_length"] = max(_TEXT, lengths.get(attribute, 0))
        if nullable:
            spec["nullable"] = True
        fields[attribute] = spec
    settings: dict[str, Any] = {"table": name, "key": keys[0] if len(keys) == 1 else keys}
    if len(keys) == 1 and types[keys[0]] == "N" and await _counted(client, meta, stored):
        # twotier hands out its ids: an automatic id again.
        del settings["key"], fields[keys[0]]
        settings["id"] = keys[0]
    lookups = []
    for index in described.get("GlobalSecondaryIndexes", []):
        field = _twotiers_lookup(index, fields)
        if field is not None:
            lookups.append(field)
        else:
            left_out.append(
                f"index {index['IndexName']!r}: another application's (twotier reads a lookup "
                "through an index of its own, by_<field>, and db init makes one)"
            )
    if lookups:
        settings["lookups"] = lookups
    settings["fields"] = fields
    return Introspected(name, settings, None, tuple(left_out))


async def _counted(client: DynamoClient, meta: str, stored: str) -> bool:
    """Whether twotier hands out the table's ids (its counter is in ``meta``)."""
    from botocore.exceptions import ClientError

    try:
        counter = await client.call(
            "get_item", TableName=meta, Key={"name": {"S": f"ids:{stored}"}}, ConsistentRead=True
        )
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":  # no twotier here yet
            return False
        raise
    return bool(counter.get("Item"))


async def _sample(client: DynamoClient, stored: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    arguments: dict[str, Any] = {"TableName": stored, "ConsistentRead": True, "Limit": _SAMPLE}
    while len(items) < _SAMPLE:
        answer = await client.call("scan", **arguments)
        items += answer.get("Items", [])
        start = answer.get("LastEvaluatedKey")
        if not start:
            break
        arguments["ExclusiveStartKey"] = start
    return items[:_SAMPLE]


def _twotiers(attribute: str) -> bool:
    """An attribute twotier writes beside the fields: the version, an index attribute, a
    composite key's text."""
    return attribute in (VERSION, KEY_TEXT) or attribute.startswith(INDEX_PREFIX)


def _twotiers_lookup(index: dict[str, Any], fields: dict[str, Any]) -> str | None:
    """The field of a lookup index twotier made (``by_<field>`` on ``_by_<field>``)."""
    partition = str(index["KeySchema"][0]["AttributeName"])
    field = partition[len(INDEX_PREFIX) :] if partition.startswith(INDEX_PREFIX) else None
    if field is None or field not in fields or index["IndexName"] != index_name(field):
        return None
    return field
