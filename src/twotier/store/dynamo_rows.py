"""One resource's rows in a DynamoDB table: reads, writes and bulk loads.

Each write of one row is one conditional call that returns the item as it was
(``ReturnValues=ALL_OLD``): create (``PutItem`` if the key is free), update (``UpdateItem``
if the row exists, adding one to its version), replace (``UpdateItem`` setting every field,
the version one above the old one, or born from the clock where there was none), delete
(``DeleteItem``). A conditional write (``expected``) adds the version to the condition, so
it is checked by the same call that writes. A write of many rows is one
``TransactWriteItems`` (all or nothing): at most ``MAX_TRANSACTION_ITEMS`` rows, past which
the write is refused, never split.

Reads by key are strongly consistent (``GetItem``, ``BatchGetItem``). Lookups query the
field's global secondary index, which DynamoDB keeps eventually consistent: ``lookup_lag``
tells the policy for how long after a write an index may still answer from before it.
Pages with a lookup field among the filters query its index (by key: keyset pagination);
other pages scan the table, in the table's own order (the cursor is the last key returned).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twotier.errors import DuplicateKey, StoreRefused, StoreUnavailable, VersionMismatch
from twotier.resources import Key, Record, Resource
from twotier.store.base import LoadRows, Query
from twotier.store.dynamo_client import DynamoClient, error_code
from twotier.store.dynamo_expressions import Expression
from twotier.store.dynamo_items import (
    KEY_TEXT,
    VERSION,
    ItemCodec,
    index_attribute,
    index_name,
    index_sort_key,
)
from twotier.versions import birth_version

#: DynamoDB's bounds: items per transaction, keys per BatchGetItem, items per BatchWriteItem.
MAX_TRANSACTION_ITEMS = 100
_BATCH_GET = 100
_BATCH_WRITE = 25
#: BatchWriteItem calls in flight at once during a bulk load.
_LOAD_CONCURRENCY = 8
#: Index queries in flight at once for a lookup of many values.
_LOOKUP_CONCURRENCY = 16
#: Rounds of retrying what a batch call left unprocessed (backoff doubling from 50 ms).
_UNPROCESSED_ROUNDS = 8
#: Tries of a write that lost a race it can retry (a transaction conflict, an id taken).
_WRITE_TRIES = 5

Item = dict[str, Any]


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(min(0.05 * 2**attempt, 2.0) * (0.5 + random.random() / 2))


class DynamoRows:
    pages_in_order = False  # a scan's order
    batch_limit: int | None = MAX_TRANSACTION_ITEMS

    def __init__(
        self,
        resource: Resource,
        table: str,
        client: DynamoClient,
        counters: Callable[[str, int], Any],
        raise_counter: Callable[[str, int], Any],
        *,
        lookup_lag: float = 1.0,
    ) -> None:
        self.resource = resource
        self.table = table
        self.codec = ItemCodec(resource)
        self.lookup_lag = lookup_lag
        self._client = client
        self._allocate = counters
        self._raise_counter = raise_counter
        #: The item key's first attribute: an item exists when it does.
        self._key = self.codec.key_names[0]

    @property
    def client(self) -> DynamoClient:
        """The store's client (the change-log follower writes versions through it)."""
        return self._client

    async def _call(self, operation: str, **arguments: Any) -> dict[str, Any]:
        return await self._client.call(operation, **arguments)

    # -- reads --------------------------------------------------------------------------

    async def get(self, key: Key) -> Record | None:
        found = await self._call(
            "get_item", TableName=self.table, Key=self.codec.key(key), ConsistentRead=True
        )
        item = found.get("Item")
        return self.codec.record(item) if item else None

    async def get_many(self, keys: Sequence[Key]) -> dict[Key, Record]:
        unique = list(dict.fromkeys(keys))
        if len(unique) == 1:
            record = await self.get(unique[0])
            return {record.key: record} if record is not None else {}
        chunks = [unique[i : i + _BATCH_GET] for i in range(0, len(unique), _BATCH_GET)]
        found: dict[Key, Record] = {}
        for items in await asyncio.gather(*(self._batch_get(chunk) for chunk in chunks)):
            for item in items:
                record = self.codec.record(item)
                found[record.key] = record
        return found

    async def _batch_get(self, keys: Sequence[Key]) -> list[Item]:
        """One BatchGetItem, then again for what it left unprocessed (with backoff)."""
        request: dict[str, Any] = {
            self.table: {"Keys": [self.codec.key(key) for key in keys], "ConsistentRead": True}
        }
        items: list[Item] = []
        for attempt in range(_UNPROCESSED_ROUNDS):
            answer = await self._call("batch_get_item", RequestItems=request)
            items.extend(answer.get("Responses", {}).get(self.table, []))
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                return items
            await _backoff(attempt)
        raise StoreUnavailable("database unavailable: DynamoDB left keys unprocessed (throttled)")

    async def lookup(
        self, field: str, values: Sequence[Any], limit: int | None = None
    ) -> dict[Any, list[Record]]:
        found: dict[Any, list[Record]] = {value: [] for value in values}
        unique = sorted(found)
        left = limit
        for start in range(0, len(unique), _LOOKUP_CONCURRENCY):
            chunk = unique[start : start + _LOOKUP_CONCURRENCY]
            answers = await asyncio.gather(
                *(self._query_index(field, value, (), None, left) for value in chunk)
            )
            for value, records in zip(chunk, answers, strict=True):
                if left is not None:
                    records = records[:left]
                    left -= len(records)
                found[value] = records
                if left == 0:
                    return found
        return found

    async def _query_index(
        self,
        field: str,
        value: Any,
        filters: Sequence[tuple[str, Any]],
        after: Key | None,
        limit: int | None,
    ) -> list[Record]:
        """The rows with ``value`` in ``field`` (and the other ``filters``), keys above
        ``after``, by key: up to ``limit`` of them."""
        expression = Expression()
        condition = (
            f"{expression.name(index_attribute(field))} = "
            f"{expression.value(self.codec.index_value(field, value))}"
        )
        if after is not None:
            sorted_by = index_sort_key(self.resource)
            bound = {"S": str(after)} if sorted_by == KEY_TEXT else self.codec.key(after)[sorted_by]
            condition += f" AND {expression.name(sorted_by)} > {expression.value(bound)}"
        arguments: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": index_name(field),
            "KeyConditionExpression": condition,
        }
        return await self._paged("query", arguments, expression, filters, limit)

    async def _paged(
        self,
        operation: str,
        arguments: dict[str, Any],
        expression: Expression,
        filters: Sequence[tuple[str, Any]],
        limit: int | None,
    ) -> list[Record]:
        """A query or scan, page after page, until ``limit`` rows matched or none are left."""
        if filters:
            arguments["FilterExpression"] = self._filter(expression, filters)
        arguments |= expression.arguments()
        records: list[Record] = []
        while True:
            if limit is not None and not filters:
                arguments["Limit"] = limit - len(records)
            answer = await self._call(operation, **arguments)
            records.extend(self.codec.records(answer.get("Items", [])))
            start = answer.get("LastEvaluatedKey")
            if not start or (limit is not None and len(records) >= limit):
                return records if limit is None else records[:limit]
            arguments["ExclusiveStartKey"] = start

    def _filter(self, expression: Expression, filters: Sequence[tuple[str, Any]]) -> str:
        terms = []
        for name, value in filters:
            if value is None:
                terms.append(f"attribute_not_exists({expression.name(name)})")
            else:
                placeholder = expression.value(self.codec.value(name, value))
                terms.append(f"{expression.name(name)} = {placeholder}")
        return " AND ".join(terms)

    async def find(self, query: Query) -> list[Record]:
        if query.conditions or query.ordered:
            # The API offers neither on DynamoDB (``Settings.on_dynamodb``).
            raise StoreRefused("lists on DynamoDB take exact filters only, by key or a scan")
        given = dict(query.filters)
        whole = all(name in given for name in self.resource.key_fields)
        if whole:  # one row at most: read it
            record = await self.get(self.resource.key_of(given))
            if record is None or not all(
                record.values[name] == value for name, value in query.filters
            ):
                return []
            found: Any = record.key  # an int or a str, as ``after`` is
            return [record] if query.after is None or found > query.after else []
        partition = self.codec.key_names[0]
        if self.resource.composite and given.get(partition) is not None:
            return await self._query_partition(given[partition], query)
        indexed = next(
            (
                (name, value)
                for name, value in query.filters
                if name in self.resource.lookups and value is not None
            ),
            None,
        )
        if indexed is not None:
            rest = [item for item in query.filters if item != indexed]
            return await self._query_index(*indexed, rest, query.after, query.limit)
        arguments: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        if query.after is not None:
            arguments["ExclusiveStartKey"] = self.codec.key(query.after)
        return await self._paged("scan", arguments, Expression(), query.filters, query.limit)

    async def _query_partition(self, value: Any, query: Query) -> list[Record]:
        """A composite key's rows of one partition (its first field's ``value``), in the
        order of its second, after ``query.after``."""
        partition, sort = self.codec.key_names
        expression = Expression()
        condition = (
            f"{expression.name(partition)} = {expression.value(self.codec.value(partition, value))}"
        )
        if query.after is not None:
            after = self.resource.key_values(query.after)
            if after[partition] == value:
                bound = expression.value(self.codec.value(sort, after[sort]))
                condition += f" AND {expression.name(sort)} > {bound}"
        rest = [item for item in query.filters if item[0] != partition]
        arguments: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": condition,
            "ConsistentRead": True,
        }
        return await self._paged("query", arguments, expression, rest, query.limit)

    async def count(self) -> int:
        arguments: dict[str, Any] = {"TableName": self.table, "Select": "COUNT"}
        total = 0
        while True:
            answer = await self._call("scan", **arguments)
            total += int(answer.get("Count", 0))
            start = answer.get("LastEvaluatedKey")
            if not start:
                return total
            arguments["ExclusiveStartKey"] = start

    # -- writes -------------------------------------------------------------------------

    async def create_many(self, rows: Sequence[Mapping[str, Any]]) -> list[Record]:
        if not rows:
            return []
        if len(rows) > MAX_TRANSACTION_ITEMS:
            raise StoreRefused(
                f"DynamoDB writes at most {MAX_TRANSACTION_ITEMS} rows in one transaction, "
                f"and this write has {len(rows)}: send at most {MAX_TRANSACTION_ITEMS} "
                "new rows per request"
            )
        if not self.resource.auto_key:
            keys = [self.resource.key_of(row) for row in rows]
            duplicated = next((key for key in keys if keys.count(key) > 1), None)
            if duplicated is not None:
                raise DuplicateKey(duplicated)
        for attempt in range(_WRITE_TRIES):
            version = birth_version()
            records = await self._new_records(rows, version)
            if await self._put_new(records):
                return records
            await _backoff(attempt)
        raise StoreUnavailable(
            "database unavailable: DynamoDB ids kept colliding with written rows"
        )

    async def _new_records(self, rows: Sequence[Mapping[str, Any]], version: int) -> list[Record]:
        keys: Sequence[Key]
        if self.resource.auto_key:
            last = await self._allocate(self.table, len(rows))
            keys = range(last - len(rows) + 1, last + 1)
        else:
            keys = [self.resource.key_of(row) for row in rows]
        named = self.resource.key
        return [
            Record(
                key,
                {name: key if name == named else row.get(name) for name in self.resource.columns},
                version,
            )
            for key, row in zip(keys, rows, strict=True)
        ]

    async def _put_new(self, records: Sequence[Record]) -> bool:
        """Write rows whose keys must be free, all or nothing; False if an automatic id was
        taken meanwhile (a row replaced under it by a client: allocate others), DuplicateKey
        for a client's key."""
        expression = Expression()
        condition = f"attribute_not_exists({expression.name(self._key)})"
        puts = [
            {
                "TableName": self.table,
                "Item": self.codec.item(record.values, record.version),
                "ConditionExpression": condition,
                **expression.arguments(),
            }
            for record in records
        ]
        from botocore.exceptions import ClientError

        for attempt in range(_WRITE_TRIES):
            try:
                if len(puts) == 1:
                    await self._call("put_item", **puts[0])
                else:
                    await self._call(
                        "transact_write_items", TransactItems=[{"Put": p} for p in puts]
                    )
                return True
            except ClientError as error:
                reasons = _cancellation_codes(error)
                if error_code(error) == "ConditionalCheckFailedException" or (
                    "ConditionalCheckFailed" in reasons
                ):
                    if self.resource.auto_key:
                        return False
                    taken = _first_taken(records, reasons)
                    raise DuplicateKey(taken) from None
                if "TransactionConflict" in reasons or "ThrottlingError" in reasons:
                    await _backoff(attempt)
                    continue
                if error_code(error) == "UnknownOperationException":  # e.g. dynalite
                    raise StoreRefused(
                        "this DynamoDB has no transactions (TransactWriteItems): "
                        "write one new row per request"
                    ) from None
                raise
        raise StoreUnavailable(
            "database unavailable: DynamoDB transaction kept conflicting with others"
        )

    async def update(
        self, key: Key, changes: Mapping[str, Any], *, expected: frozenset[int] | None = None
    ) -> tuple[Record, Record] | None:
        expression = Expression()
        update = self._update_expression(expression, changes)
        update_set = f"{expression.name(VERSION)} = {expression.name(VERSION)} + "
        update = _with_set(update, update_set + expression.number(1))
        condition = f"attribute_exists({expression.name(self._key)})"
        if expected is not None:
            condition += f" AND {expression.among(VERSION, expected)}"
        old = await self._conditional(
            "update_item",
            key,
            expected,
            UpdateExpression=update,
            ConditionExpression=condition,
            **expression.arguments(),
        )
        if old is None:
            return None
        before = self.codec.record(old)
        return before, before.replaced(dict(changes))

    async def put(
        self, key: Key, values: Mapping[str, Any], *, expected: frozenset[int] | None = None
    ) -> tuple[Record | None, Record]:
        keys = self.resource.key_fields
        changes = {name: values.get(name) for name in self.resource.columns if name not in keys}
        born = birth_version()
        expression = Expression()
        update = self._update_expression(expression, changes)
        version = expression.name(VERSION)
        update = _with_set(
            update,
            f"{version} = if_not_exists({version}, {expression.number(born - 1)}) "
            f"+ {expression.number(1)}",
        )
        arguments: dict[str, Any] = {"UpdateExpression": update}
        if expected is not None:
            terms = []
            if 0 in expected:
                terms.append(f"attribute_not_exists({expression.name(self._key)})")
            if expected - {0}:
                terms.append(expression.among(VERSION, expected - {0}))
            arguments["ConditionExpression"] = " OR ".join(terms)
        old = await self._conditional(
            "update_item", key, expected, **arguments, **expression.arguments()
        )
        named = {**changes, **self.resource.key_values(key)}
        named = {name: named[name] for name in self.resource.columns}
        if old is None:
            if self.resource.auto_key:
                await self._raise_counter(self.table, int(key))
            return None, Record(key, named, born)
        before = self.codec.record(old)
        return before, Record(key, named, before.version + 1)

    async def delete(self, key: Key, *, expected: frozenset[int] | None = None) -> Record | None:
        arguments: dict[str, Any] = {}
        if expected is not None:
            expression = Expression()
            arguments["ConditionExpression"] = expression.among(VERSION, expected)
            arguments |= expression.arguments()
        old = await self._conditional("delete_item", key, expected, **arguments)
        return self.codec.record(old) if old is not None else None

    def _update_expression(self, expression: Expression, changes: Mapping[str, Any]) -> str:
        """``SET`` the fields ``changes`` gives a value (and their index attributes),
        ``REMOVE`` those it nulls."""
        sets = [
            f"{expression.name(name)} = {expression.value(value)}"
            for name, value in self.codec.attributes(changes).items()
        ]
        removed = [expression.name(name) for name in self.codec.removed(changes)]
        update = f"SET {', '.join(sets)}" if sets else ""
        if removed:
            update += f" REMOVE {', '.join(removed)}"
        return update.strip()

    async def _conditional(
        self, operation: str, key: Key, expected: frozenset[int] | None, **arguments: Any
    ) -> Item | None:
        """A conditional write of one item: the item as it was (None: there was none), or
        None when the condition found no row (without ``expected``), or VersionMismatch."""
        from botocore.exceptions import ClientError

        try:
            answer = await self._call(
                operation,
                TableName=self.table,
                Key=self.codec.key(key),
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **arguments,
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise
            current: Item | None = error.response.get("Item")
            if current is None:  # a server that does not return it (dynalite): read it
                current = (
                    await self._call(
                        "get_item",
                        TableName=self.table,
                        Key=self.codec.key(key),
                        ConsistentRead=True,
                    )
                ).get("Item")
            if expected is None and current is None:
                return None
            version = self.codec.record(current).version if current else 0
            raise VersionMismatch(version) from None
        return answer.get("Attributes") or None

    # -- bulk ---------------------------------------------------------------------------

    async def bulk_load(self, rows: LoadRows, *, replace: bool, keep: Callable[[], bool]) -> int:
        """Write the rows with BatchWriteItem, ``_BATCH_WRITE`` a call, ``_LOAD_CONCURRENCY``
        calls at once, each retrying what DynamoDB left unprocessed. Not one transaction:
        when ``keep()`` turns False the load stops, and what was written stays."""
        if replace:
            await self.empty()
        version = birth_version()
        names = self.resource.columns
        pending: set[asyncio.Task[None]] = set()
        batch: dict[Key, Item] = {}
        loaded = 0
        highest = 0

        async def flush(items: list[Item]) -> None:
            await self._batch_write([{"PutRequest": {"Item": item}} for item in items])

        try:
            for values, _line in rows:
                if not keep():
                    break
                named = dict(zip(names, values, strict=True))
                key = self.resource.key_of(named)
                batch[key] = self.codec.item(named, version)  # a key twice: the last one wins
                if self.resource.auto_key:
                    highest = max(highest, int(key))
                if len(batch) == _BATCH_WRITE:
                    if len(pending) >= _LOAD_CONCURRENCY:
                        done, pending = await asyncio.wait(
                            pending, return_when=asyncio.FIRST_COMPLETED
                        )
                        for task in done:
                            task.result()
                    pending.add(asyncio.create_task(flush(list(batch.values()))))
                    loaded += len(batch)
                    batch = {}
            if batch and keep():
                pending.add(asyncio.create_task(flush(list(batch.values()))))
                loaded += len(batch)
            for finished in asyncio.as_completed(pending):
                await finished
        finally:
            for task in pending:
                task.cancel()
        if highest:
            await self._raise_counter(self.table, highest)
        return loaded

    async def _batch_write(self, requests: list[Item]) -> None:
        request: dict[str, Any] = {self.table: requests}
        for attempt in range(_UNPROCESSED_ROUNDS):
            answer = await self._call("batch_write_item", RequestItems=request)
            request = answer.get("UnprocessedItems") or {}
            if not request:
                return
            await _backoff(attempt)
        raise StoreUnavailable("database unavailable: DynamoDB left writes unprocessed (throttled)")

    async def empty(self) -> None:
        """Delete every row (a scan of the keys, deleted ``_BATCH_WRITE`` at a time)."""
        expression = Expression()
        arguments: dict[str, Any] = {
            "TableName": self.table,
            "ProjectionExpression": ", ".join(map(expression.name, self.codec.key_names)),
            **expression.arguments(),
        }
        while True:
            answer = await self._call("scan", **arguments)
            keys = [
                {name: item[name] for name in self.codec.key_names}
                for item in answer.get("Items", [])
            ]
            await asyncio.gather(
                *(
                    self._batch_write(
                        [{"DeleteRequest": {"Key": key}} for key in keys[i : i + _BATCH_WRITE]]
                    )
                    for i in range(0, len(keys), _BATCH_WRITE)
                )
            )
            start = answer.get("LastEvaluatedKey")
            if not start:
                return
            arguments["ExclusiveStartKey"] = start


def _with_set(update: str, assignment: str) -> str:
    """``update`` with one more ``SET`` assignment."""
    if update.startswith("SET "):
        return f"SET {assignment}, {update[4:]}"
    return f"SET {assignment} {update}".strip()


def _cancellation_codes(error: Exception) -> list[str]:
    """The reason of each item of a cancelled transaction, in order ('None' where fine)."""
    response = getattr(error, "response", {})
    reasons = response.get("CancellationReasons") or []
    return [str(reason.get("Code", "None")) for reason in reasons]


def _first_taken(records: Sequence[Record], reasons: list[str]) -> Key | None:
    for record, reason in zip(records, reasons, strict=False):
        if reason == "ConditionalCheckFailed":
            return record.key
    return records[0].key if len(records) == 1 else None
