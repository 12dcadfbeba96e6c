"""The change log of the configured database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twotier.errors import FollowRefused
from twotier.follow.changes import ChangeLog
from twotier.service import Service


def change_log_for(service: Service, namespace: str) -> ChangeLog:
    """The change log of the service's database, for the cache ``namespace``; FollowRefused
    where there is none to follow yet (the message names what is)."""
    from twotier.store.sql import SQLStore

    store = service.store
    if isinstance(store, SQLStore) and store.backend == "mysql":
        from twotier.follow.binlog import BinlogChangeLog

        return BinlogChangeLog(store, [store.rows(name) for name in service.resources])
    if isinstance(store, SQLStore) and store.backend == "sqlite":
        from twotier.follow.sqlite_log import SQLiteChangeLog

        return SQLiteChangeLog(store, [store.rows(name) for name in service.resources])
    if isinstance(store, SQLStore) and store.backend == "postgresql":
        from twotier.follow.pg_logical import PgLogicalChangeLog

        return PgLogicalChangeLog(store, [store.rows(n) for n in service.resources], namespace)
    from twotier.store.dynamo import DynamoStore

    if isinstance(store, DynamoStore):
        from twotier.follow.dynamo_streams import DynamoStreamsChangeLog

        return DynamoStreamsChangeLog(store, [store.rows(n) for n in service.resources])
    raise FollowRefused(f"cannot follow {type(store).__name__}: it has no change log")


async def follow_stream_event(service: Service, event: Mapping[str, Any]) -> dict[str, Any]:
    """The stream records a Lambda event source mapping delivers (DynamoDB Streams),
    applied as the follower applies its own; the answer Lambda reports back."""
    from twotier.follow.dynamo_streams import follow_stream_event as follow

    return await follow(service, event)
