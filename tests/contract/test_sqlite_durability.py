"""SQLite keeps what it acknowledged: by default every commit syncs the write-ahead log
(`synchronous=FULL`), so a write twotier answered survives a crash of the OS or a power cut;
`TWOTIER_SQLITE_SYNCHRONOUS=normal` trades that for faster writes (a crash of the OS may
lose the last commits, never corrupt the file; benchmarks/results/sqlite-durability)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from twotier.bootstrap import build_store
from twotier.config import Settings
from twotier.store.sql import SQLStore

#: PRAGMA synchronous's answers.
_NORMAL, _FULL = 1, 2


@pytest.mark.parametrize(("setting", "expected"), [(None, _FULL), ("normal", _NORMAL)])
async def test_a_commit_is_synced_unless_told_otherwise(
    tmp_path: Path, setting: str | None, expected: int
) -> None:
    url = f"sqlite:///{tmp_path}/durable.sqlite3"
    chosen = {} if setting is None else {"sqlite_synchronous": setting}
    store = build_store(Settings(database_url=url, **chosen))  # type: ignore[arg-type]
    assert isinstance(store, SQLStore)
    try:
        await store.init_schema()
        async with store.engine.connect() as conn:
            assert await conn.scalar(text("PRAGMA synchronous")) == expected
            assert await conn.scalar(text("PRAGMA journal_mode")) == "wal"
    finally:
        await store.close()
