"""The DynamoDB store: every declared resource's table, the API keys' table and twotier's
counters, through one async client per process (``dynamo_client``).

Tables are named ``<table_prefix><table>`` (the resource's declared table name), so that
several deployments can share an account and a region. Automatic integer keys come from an
atomic counter item per table in the counters table: ``ADD`` hands out a block of ids in
one call (one per row of a batch); a row written under a key of a client's choosing (a
``PUT`` that creates, a bulk load) raises the counter past it, so that no id is handed out
twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from twotier.errors import StoreRefused, StoreUnavailable
from twotier.key_records import KeyRecord, Role
from twotier.resources import Resource, load_resources
from twotier.resources.introspected import Introspected
from twotier.store import dynamo_introspect
from twotier.store.base import Detachment, FollowerUser, SchemaChange, new_id
from twotier.store.dynamo_client import DynamoClient, error_code, parse_dynamodb_url
from twotier.store.dynamo_expressions import Expression
from twotier.store.dynamo_rows import DynamoRows
from twotier.store.dynamo_schema import (
    KEYS_TABLE,
    META_TABLE,
    ensure_tables,
    plain_table,
    resource_table,
    wait_deleted,
)

_COUNTER = "next"
_IDENTITY = "database_id"  # the meta table's item holding the database's identity
_VALUE = "value"


class DynamoStore:
    """The declared resources' tables in DynamoDB."""

    backend = "dynamodb"

    def __init__(
        self,
        url: str,
        resources: Sequence[Resource] | None = None,
        *,
        pool_size: int = 10,
        timeout: float = 5.0,
        lookup_lag: float = 1.0,
    ) -> None:
        self.target = parse_dynamodb_url(url)
        self.client = DynamoClient(self.target, pool_size=pool_size, timeout=timeout)
        self.keys_table = self.target.table(KEYS_TABLE)
        self.meta_table = self.target.table(META_TABLE)
        resources = resources if resources is not None else load_resources(None)
        for resource in resources:
            filled = resource.filled_by_database
            if filled:
                raise StoreRefused(
                    f"resources.{resource.name}.fields.{filled[0]}: DynamoDB fills no "
                    "attribute itself: drop `database_default` (or declare a `default`)"
                )
            queried = next(
                (kind for kind in ("ranges", "sets", "prefixes") if getattr(resource, kind)),
                None,
            )
            if queried is not None:
                raise StoreRefused(
                    f"resources.{resource.name}.{queried}: DynamoDB serves comparisons, sets "
                    "and prefixes only on an index's sort key, which twotier does not make: "
                    "declare them on a SQL database"
                )
            if len(resource.key_fields) > 2:
                raise StoreRefused(
                    f"resources.{resource.name}: a DynamoDB table's key is a partition key "
                    f"and a sort key: a key of {len(resource.key_fields)} fields "
                    f"({', '.join(resource.key_fields)}) does not fit"
                )
        self._rows = {
            resource.name: DynamoRows(
                resource,
                self.target.table(resource.table),
                self.client,
                self.allocate_ids,
                self.raise_ids,
                lookup_lag=lookup_lag,
            )
            for resource in resources
        }

    def rows(self, resource: str) -> DynamoRows:
        return self._rows[resource]

    async def init_schema(
        self, *, dry_run: bool = False, if_changed: bool = False
    ) -> list[SchemaChange]:
        # ``if_changed`` changes nothing here: describing each table is the whole plan, and
        # needs no lock.
        specs = [resource_table(rows.resource, rows.table) for rows in self._rows.values()]
        specs += [plain_table(self.keys_table, "id"), plain_table(self.meta_table, "name")]
        lines = await ensure_tables(self.client, specs, dry_run=dry_run)
        done = [SchemaChange(line) for line in lines]
        if dry_run:
            return done
        from botocore.exceptions import ClientError

        try:  # once: the first process to get here writes it
            await self.client.call(
                "put_item",
                TableName=self.meta_table,
                Item={"name": {"S": _IDENTITY}, _VALUE: {"S": new_id()}},
                ConditionExpression="attribute_not_exists(#name)",
                ExpressionAttributeNames={"#name": "name"},
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise
        return done

    async def introspect(self, tables: Sequence[str] | None = None) -> list[Introspected]:
        return await dynamo_introspect.introspect(self.client, self.target, tables, self.meta_table)

    async def detach(self, *, dry_run: bool = False) -> Detachment:
        raise StoreRefused(
            "db detach works on SQL databases; on DynamoDB every item carries twotier's "
            "version attribute, which only a rewrite of each item would take away"
        )

    async def grant_follower(self, user: FollowerUser) -> None:
        raise StoreRefused(
            "DynamoDB has no database users: the follower reads the Streams with IAM's leave"
        )

    async def identity(self) -> str:
        answer = await self.client.call(
            "get_item",
            TableName=self.meta_table,
            Key={"name": {"S": _IDENTITY}},
            ConsistentRead=True,
        )
        item = answer.get("Item")
        if item is None:
            raise StoreUnavailable("the database has no identity yet: run twotier db init")
        return str(item[_VALUE]["S"])

    async def learn(self) -> None:
        """Nothing to learn: DynamoDB changes no item as it is written."""

    async def drop_schema(self) -> None:
        """Delete the resources' tables (tests use it); the keys and counters stay."""
        from botocore.exceptions import ClientError

        for rows in self._rows.values():
            try:
                await self.client.call("delete_table", TableName=rows.table)
            except ClientError as error:
                if error_code(error) != "ResourceNotFoundException":
                    raise
            await wait_deleted(self.client, rows.table)
            await self.reset_ids(rows.table)

    async def reset_ids(self, table: str) -> None:
        from botocore.exceptions import ClientError

        try:
            await self.client.call(
                "delete_item", TableName=self.meta_table, Key={"name": {"S": f"ids:{table}"}}
            )
        except ClientError as error:
            if error_code(error) != "ResourceNotFoundException":
                raise

    async def ping(self) -> None:
        from botocore.exceptions import ClientError

        try:
            await self.client.call("describe_table", TableName=self.meta_table)
        except ClientError as error:
            if error_code(error) != "ResourceNotFoundException":  # reachable, not made yet
                raise

    def pool_usage(self) -> dict[str, int]:
        return self.client.pool_usage()

    async def close(self) -> None:
        await self.client.close()

    # -- automatic ids ------------------------------------------------------------------

    async def allocate_ids(self, table: str, count: int) -> int:
        """Hand out ``count`` ids for ``table``: the last of them (the first is
        ``last - count + 1``)."""
        expression = Expression()
        answer = await self.client.call(
            "update_item",
            TableName=self.meta_table,
            Key={"name": {"S": f"ids:{table}"}},
            UpdateExpression=f"ADD {expression.name(_COUNTER)} {expression.number(count)}",
            ReturnValues="UPDATED_NEW",
            **expression.arguments(),
        )
        return int(answer["Attributes"][_COUNTER]["N"])

    async def raise_ids(self, table: str, at_least: int) -> None:
        """Make sure no id up to ``at_least`` is handed out for ``table`` from now on."""
        from botocore.exceptions import ClientError

        expression = Expression()
        counter, value = expression.name(_COUNTER), expression.number(at_least)
        try:
            await self.client.call(
                "update_item",
                TableName=self.meta_table,
                Key={"name": {"S": f"ids:{table}"}},
                UpdateExpression=f"SET {counter} = {value}",
                ConditionExpression=f"attribute_not_exists({counter}) OR {counter} < {value}",
                **expression.arguments(),
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":  # already past it
                raise

    # -- API keys -----------------------------------------------------------------------

    async def add_key(self, record: KeyRecord) -> None:
        item: dict[str, Any] = {
            "id": {"S": record.id},
            "name": {"S": record.name},
            "role": {"S": record.role.value},
            "secret_hash": {"S": record.secret_hash},
            "created_at": {"S": record.created_at.astimezone(UTC).isoformat()},
        }
        expression = Expression()
        await self.client.call(
            "put_item",
            TableName=self.keys_table,
            Item=item,
            ConditionExpression=f"attribute_not_exists({expression.name('id')})",
            **expression.arguments(),
        )

    async def list_keys(self) -> list[KeyRecord]:
        arguments: dict[str, Any] = {"TableName": self.keys_table, "ConsistentRead": True}
        records: list[KeyRecord] = []
        while True:
            answer = await self.client.call("scan", **arguments)
            records.extend(_key_record(item) for item in answer.get("Items", []))
            start = answer.get("LastEvaluatedKey")
            if not start:
                return sorted(records, key=lambda record: (record.created_at, record.id))
            arguments["ExclusiveStartKey"] = start

    async def revoke_key(self, key_id: str, when: datetime) -> bool:
        from botocore.exceptions import ClientError

        expression = Expression()
        revoked = expression.name("revoked_at")
        try:
            await self.client.call(
                "update_item",
                TableName=self.keys_table,
                Key={"id": {"S": key_id}},
                UpdateExpression=f"SET {revoked} = "
                f"{expression.value({'S': when.astimezone(UTC).isoformat()})}",
                ConditionExpression=f"attribute_exists({expression.name('id')}) "
                f"AND attribute_not_exists({revoked})",
                **expression.arguments(),
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _key_record(item: dict[str, Any]) -> KeyRecord:
    revoked = item.get("revoked_at")
    return KeyRecord(
        id=item["id"]["S"],
        name=item["name"]["S"],
        role=Role(item["role"]["S"]),
        secret_hash=item["secret_hash"]["S"],
        created_at=datetime.fromisoformat(item["created_at"]["S"]),
        revoked_at=datetime.fromisoformat(revoked["S"]) if revoked else None,
    )
