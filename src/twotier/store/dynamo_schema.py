"""The DynamoDB tables twotier needs, and making them: one per declared resource, one for
the API keys, one for twotier's own counters.

A resource's table is keyed by the resource's key (``N`` or ``S``; a key of two fields, the
partition key and the sort key), billed on demand, with one global secondary index per
lookup field: the field's index attribute as its partition key, the resource's key (a
composite key's text) as its sort key (so an index query answers by key), every attribute
projected. ``ensure_tables`` creates what is missing and adds a missing index to a table
that exists (one at a time, as DynamoDB requires), then waits until everything is active;
it never deletes anything, and refuses a table keyed otherwise than declared.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from typing import Any

from twotier.errors import SchemaMismatch, StoreUnavailable
from twotier.resources import Resource
from twotier.store.dynamo_client import DynamoClient, error_code
from twotier.store.dynamo_items import (
    index_attribute,
    index_name,
    index_sort_key,
    key_attributes,
)

KEYS_TABLE = "twotier_api_keys"
META_TABLE = "twotier_meta"
#: Seconds ``ensure_tables`` waits for tables and indexes to become active.
_ACTIVE_WITHIN = 600.0
#: Polls of a table's state: the first soon (a local server takes milliseconds), then
#: further apart, up to the last interval (DynamoDB takes seconds).
_POLLS = (0.02, 0.05, 0.1, 0.2, 0.5)

TableSpec = dict[str, Any]


def resource_table(resource: Resource, name: str) -> TableSpec:
    """CreateTable's arguments for a resource's table."""
    attributes = key_attributes(resource)
    partition, *sort = attributes
    sorted_by = index_sort_key(resource)
    indexes = []
    for field in resource.lookups:
        attributes[index_attribute(field)] = "S"
        attributes.setdefault(sorted_by, "S")  # a composite key's text
        indexes.append(
            {
                "IndexName": index_name(field),
                "KeySchema": [
                    {"AttributeName": index_attribute(field), "KeyType": "HASH"},
                    {"AttributeName": sorted_by, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        )
    spec: TableSpec = {
        "TableName": name,
        "AttributeDefinitions": [
            {"AttributeName": attribute, "AttributeType": kind}
            for attribute, kind in attributes.items()
        ],
        "KeySchema": [
            {"AttributeName": partition, "KeyType": "HASH"},
            *({"AttributeName": name, "KeyType": "RANGE"} for name in sort),
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if indexes:
        spec["GlobalSecondaryIndexes"] = indexes
    return spec


def plain_table(name: str, key: str) -> TableSpec:
    """CreateTable's arguments for a table keyed by one text attribute (keys, counters)."""
    return {
        "TableName": name,
        "AttributeDefinitions": [{"AttributeName": key, "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
        "BillingMode": "PAY_PER_REQUEST",
    }


async def ensure_tables(
    client: DynamoClient, specs: Sequence[TableSpec], *, dry_run: bool = False
) -> list[str]:
    """Create the tables (and indexes) that are missing and wait until all are active;
    what was done (``dry_run``: what would be), one line each."""
    done: list[str] = []
    for spec in specs:
        done += await _ensure_table(client, spec, dry_run)
    if dry_run:
        return done
    deadline = time.monotonic() + _ACTIVE_WITHIN
    for spec in specs:
        await _wait_active(client, spec["TableName"], deadline)
    return done


async def _describe(client: DynamoClient, name: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        table: dict[str, Any] = (await client.call("describe_table", TableName=name))["Table"]
        return table
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            return None
        raise


async def _ensure_table(client: DynamoClient, spec: TableSpec, dry_run: bool) -> list[str]:
    from botocore.exceptions import ClientError

    name = spec["TableName"]
    existing = await wait_deleted(client, name, only_if_deleting=True)
    if existing is None:
        if not dry_run:
            try:
                await client.call("create_table", **spec)
            except ClientError as error:  # made meanwhile by another process
                if error_code(error) != "ResourceInUseException":
                    raise
        return [f"create table {name}"]
    keyed = [(part["AttributeName"], part["KeyType"]) for part in existing["KeySchema"]]
    declared = [(part["AttributeName"], part["KeyType"]) for part in spec["KeySchema"]]
    if keyed != declared:
        raise SchemaMismatch(
            [
                f"table {name} is keyed by {_shown(keyed)}, and its declaration by "
                f"{_shown(declared)}: declare the table's own key (key = [partition, sort])"
            ]
        )
    have = {index["IndexName"] for index in existing.get("GlobalSecondaryIndexes", [])}
    done: list[str] = []
    for index in spec.get("GlobalSecondaryIndexes", []):
        if index["IndexName"] in have:
            continue
        done.append(f"{name}: create index {index['IndexName']}")
        if dry_run:
            continue
        # DynamoDB takes one index change at a time, on an active table.
        await _wait_active(client, spec["TableName"], time.monotonic() + _ACTIVE_WITHIN)
        wanted = {a["AttributeName"] for a in index["KeySchema"]}
        await client.call(
            "update_table",
            TableName=spec["TableName"],
            AttributeDefinitions=[
                a for a in spec["AttributeDefinitions"] if a["AttributeName"] in wanted
            ],
            GlobalSecondaryIndexUpdates=[{"Create": index}],
        )
    return done


def _shown(key: list[tuple[str, str]]) -> str:
    return " and ".join(
        f"{name} ({'partition' if kind == 'HASH' else 'sort'} key)" for name, kind in key
    )


async def wait_deleted(
    client: DynamoClient, name: str, *, only_if_deleting: bool = False
) -> dict[str, Any] | None:
    """Wait until the table ``name`` is gone (``only_if_deleting``: only if it is being
    deleted); what describes it then (None: gone)."""
    deadline = time.monotonic() + _ACTIVE_WITHIN
    for poll in _polls():
        table = await _describe(client, name)
        if table is None or (only_if_deleting and table.get("TableStatus") != "DELETING"):
            return table
        if time.monotonic() > deadline:
            raise StoreUnavailable(f"database unavailable: DynamoDB table {name} is not gone")
        await asyncio.sleep(poll)
    raise AssertionError("unreachable")


def _polls() -> Iterator[float]:
    yield from _POLLS
    while True:
        yield _POLLS[-1]


async def _wait_active(client: DynamoClient, name: str, deadline: float) -> None:
    for poll in _polls():
        table = await _describe(client, name)
        if table is None:
            raise StoreUnavailable(f"database unavailable: DynamoDB table {name} was deleted")
        if table.get("TableStatus") == "ACTIVE":
            statuses = [i.get("IndexStatus") for i in table.get("GlobalSecondaryIndexes", [])]
            if all(status in (None, "ACTIVE") for status in statuses):
                return
        if time.monotonic() > deadline:
            raise StoreUnavailable(f"database unavailable: DynamoDB table {name} is not active")
        await asyncio.sleep(poll)
