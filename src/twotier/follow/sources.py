"""The change log of the configured database."""

from __future__ import annotations

from twotier.follow.changes import ChangeLog, FollowRefused
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
    kind = store.backend if isinstance(store, SQLStore) else "dynamodb"
    raise FollowRefused(
        f"following {kind}'s change log is not built yet: MySQL, MariaDB, Aurora MySQL "
        "(the binary log), PostgreSQL (logical decoding) and SQLite (its change table) are"
    )
