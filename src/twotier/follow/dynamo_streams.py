"""DynamoDB: the resource tables' Streams (``NEW_AND_OLD_IMAGES``).

Each resource table's stream is read shard by shard (``GetRecords``, every ``_POLL``
seconds while quiet, at once again while a shard has more); a record's old and new images
are the row before and after, decoded as the store decodes its items. Order holds within a
shard, which holds every change of a key in turn; across shards it does not matter (the
cache's versions decide).

A position is JSON: the moment following began (``since``) and, per shard, the sequence
number of the last record applied. A shard without one is read from its oldest record,
skipping records from before ``since`` (a second early, to allow for their rounding): so
following from "now" needs no record to exist yet. A shard the stream no longer holds
(past its 24 hours), a sequence number it has trimmed, or a stream made anew (disabled and
enabled again) loses the position.

``prepare`` (``db init`` with ``TWOTIER_FOLLOW=on``, or the follower's first start) turns
the streams on where they are off. In AWS, the CDK stacks turn them on, and a Lambda event
source mapping can deliver the same records to the handler instead (``aws_lambda``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from datetime import datetime
from typing import Any

from twotier.errors import CacheUnavailable, ChangeLogUnavailable, PositionLost, StoreUnavailable
from twotier.follow.changes import Batch, Change, apply_changes
from twotier.service import Service
from twotier.store.dynamo import DynamoStore
from twotier.store.dynamo_client import DynamoClient, error_code
from twotier.store.dynamo_expressions import Expression
from twotier.store.dynamo_items import VERSION, index_attribute
from twotier.store.dynamo_rows import DynamoRows
from twotier.versions import birth_version

log = logging.getLogger("twotier.follow")

_POLL = 0.5  # seconds between reads of quiet shards (DynamoDB allows 5 a second a shard)
_HEARTBEAT = 1.0
_SHARDS_EVERY = 10.0  # seconds between looks for new shards (shards split and close)
_LOST = ("TrimmedDataAccessException", "ResourceNotFoundException")
_VIEW = "NEW_AND_OLD_IMAGES"


def change_of(rows: DynamoRows, record: Mapping[str, Any]) -> Change:
    """A stream record (as GetRecords or a Lambda event gives it) as a row change."""
    images = record["dynamodb"]
    old, new = images.get("OldImage"), images.get("NewImage")
    return Change(
        rows.resource.name,
        rows.codec.record(old) if old else None,
        rows.codec.record(new) if new else None,
    )


def _version(image: Mapping[str, Any] | None) -> int | None:
    if not image or VERSION not in image:
        return None
    return int(image[VERSION]["N"])


async def keep_versions(rows: DynamoRows, records: Sequence[Mapping[str, Any]]) -> None:
    """What SQL's triggers do, for writers that bypass twotier: a write that left the
    version alone (or an item made without one) gets the next version (one born from the
    clock), and its lookup fields' index attributes, from its new image, in one conditional
    update. Its own stream record then carries the row at a version no fill of the row
    as it was can beat. (Not the image here: another write that also left the version
    alone may have come after it; the update's own record carries what the item holds.) A
    condition that fails means the item moved on: its next record speaks for it."""
    from botocore.exceptions import ClientError

    for record in records:
        images = record["dynamodb"]
        new, old = images.get("NewImage"), images.get("OldImage")
        if not new:
            continue  # a deletion: its tombstone is one above the old image's version
        before, after = _version(old), _version(new)
        if after is not None and (before is None or after > before):
            continue  # twotier's own write, or one that keeps the version as it should
        row = rows.codec.record(new)
        expression = Expression()
        version = _next(before, after)
        sets = [f"{expression.name(VERSION)} = {expression.number(version)}"]
        attributes = rows.codec.attributes(row.values)
        for field in rows.resource.lookups:
            name = index_attribute(field)
            if name in attributes:
                sets.append(f"{expression.name(name)} = {expression.value(attributes[name])}")
        if after is None:
            condition = f"attribute_not_exists({expression.name(VERSION)})"
        else:
            condition = f"{expression.name(VERSION)} = {expression.number(after)}"
        try:
            await rows.client.call(
                "update_item",
                TableName=rows.table,
                Key=rows.codec.key(row.key),
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression=condition,
                **expression.arguments(),
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise


def _next(before: int | None, after: int | None) -> int:
    if before is None and after is None:
        return birth_version()  # made without a version: born now, as twotier's rows are
    return max(before or 0, after or 0) + 1


class DynamoStreamsChangeLog:
    name = "dynamodb streams"

    def __init__(self, store: DynamoStore, rows: Sequence[DynamoRows]) -> None:
        self._store = store
        self._tables = {each.table: each for each in rows}
        self._streams = DynamoClient(store.target, service="dynamodbstreams")

    async def _call(self, client: DynamoClient, operation: str, **arguments: Any) -> Any:
        """One call; a lost position as PositionLost, faults as ChangeLogUnavailable."""
        from botocore.exceptions import ClientError

        try:
            return await client.call(operation, **arguments)
        except ClientError as error:
            if error_code(error) in _LOST:
                raise PositionLost(f"DynamoDB Streams: {error_code(error)}") from None
            raise ChangeLogUnavailable(f"DynamoDB Streams: {error}") from None
        except StoreUnavailable as error:
            raise ChangeLogUnavailable(str(error)) from None

    async def _stream_arns(self) -> dict[str, str]:
        """Each table's stream (turned on where it is off)."""
        arns = {}
        for table in self._tables:
            described = (await self._call(self._store.client, "describe_table", TableName=table))[
                "Table"
            ]
            spec = described.get("StreamSpecification", {})
            if not (spec.get("StreamEnabled") and spec.get("StreamViewType") == _VIEW):
                await self._call(
                    self._store.client,
                    "update_table",
                    TableName=table,
                    StreamSpecification={"StreamEnabled": True, "StreamViewType": _VIEW},
                )
                described = (
                    await self._call(self._store.client, "describe_table", TableName=table)
                )["Table"]
            arns[table] = described["LatestStreamArn"]
        return arns

    async def prepare(self) -> None:
        await self._stream_arns()

    async def now(self) -> str:
        return json.dumps({"since": time.time(), "streams": await self._stream_arns(), "at": {}})

    async def _shards(self, arn: str) -> list[str]:
        shards: list[str] = []
        start: dict[str, str] = {}
        while True:
            described = (
                await self._call(self._streams, "describe_stream", StreamArn=arn, **start)
            )["StreamDescription"]
            shards += [shard["ShardId"] for shard in described.get("Shards", [])]
            last = described.get("LastEvaluatedShardId")
            if not last:
                return shards
            start = {"ExclusiveStartShardId": last}

    async def _iterator(self, arn: str, shard: str, after: str | None) -> str | None:
        where: dict[str, str] = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
            if after
            else {"ShardIteratorType": "TRIM_HORIZON"}
        )
        found = await self._call(
            self._streams, "get_shard_iterator", StreamArn=arn, ShardId=shard, **where
        )
        iterator: str | None = found.get("ShardIterator")
        return iterator

    async def batches(self, position: str) -> AsyncGenerator[Batch, None]:
        state = json.loads(position)
        since: float = state["since"]
        at: dict[str, str] = state["at"]  # "table/shard": the last sequence number applied
        streams = await self._stream_arns()
        if streams != state["streams"]:
            raise PositionLost("a table's stream was made anew")
        iterators: dict[str, tuple[str, str, str | None]] = {}  # shard key: (table, arn, it)
        looked = 0.0
        heard = time.monotonic()
        while True:
            now = time.monotonic()
            if now - looked >= _SHARDS_EVERY:
                for table, arn in streams.items():
                    for shard in await self._shards(arn):
                        name = f"{table}/{shard}"
                        if name not in iterators:
                            iterator = await self._iterator(arn, shard, at.get(name))
                            iterators[name] = (table, arn, iterator)
                looked = now
            busy = False
            for name, (table, arn, iterator) in list(iterators.items()):
                if iterator is None:  # a closed shard, read to its end
                    continue
                answer = await self._call(
                    self._streams, "get_records", ShardIterator=iterator, Limit=1000
                )
                iterators[name] = (table, arn, answer.get("NextShardIterator"))
                records = answer.get("Records", [])
                if not records:
                    continue
                busy = True
                await keep_versions(self._tables[table], records)
                at[name] = records[-1]["dynamodb"]["SequenceNumber"]
                moments = [_moment(r) for r in records]
                changes = tuple(
                    change_of(self._tables[table], record)
                    for record, moment in zip(records, moments, strict=True)
                    if moment >= since - 1
                )
                position = json.dumps({"since": since, "streams": streams, "at": at})
                yield Batch(changes, position, max(moments))
                heard = time.monotonic()
            if busy:
                continue
            if time.monotonic() - heard >= _HEARTBEAT:
                yield Batch((), json.dumps({"since": since, "streams": streams, "at": at}))
                heard = time.monotonic()
            await asyncio.sleep(_POLL)

    def settled(self, position: str) -> str:
        return position  # a shard's sequence moves only as it is read

    async def saved(self, position: str) -> None:
        return None  # a stream keeps 24 hours, whoever reads it

    async def close(self) -> None:
        await self._streams.close()


def _moment(record: Mapping[str, Any]) -> float:
    stamp = record["dynamodb"].get("ApproximateCreationDateTime", 0)
    return stamp.timestamp() if isinstance(stamp, datetime) else float(stamp)


async def follow_stream_event(service: Service, event: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB stream records delivered to the Lambda handler by an event source mapping
    (what ``twotier follow`` does from a process of its own, here per batch). Applied table
    by table, in order; the first record of a table whose changes were not all applied
    (the cache or DynamoDB failing, or anything else) is reported as a batch item failure,
    so Lambda delivers it (and what follows) again instead of dropping it."""
    store = service.store
    assert isinstance(store, DynamoStore)
    by_table: dict[str, list[Mapping[str, Any]]] = {}
    for record in event["Records"]:
        table = str(record["eventSourceARN"]).split(":table/", 1)[1].split("/stream/", 1)[0]
        by_table.setdefault(table, []).append(record)
    rows = {store.rows(name).table: store.rows(name) for name in service.resources}
    failures = []
    for table, records in by_table.items():
        each = rows.get(table)
        if each is None:
            continue  # a table twotier does not serve
        try:
            await keep_versions(each, records)
            changes = [change_of(each, record) for record in records]
            await apply_changes(service, changes, max(_moment(r) for r in records))
        except Exception as error:  # whatever it is, the records must come again
            known = isinstance(error, CacheUnavailable | StoreUnavailable)
            log.warning(
                "stream records of %s not applied, to be delivered again: %s",
                table,
                error,
                exc_info=not known,
            )
            failures.append({"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]})
    return {"batchItemFailures": failures}
