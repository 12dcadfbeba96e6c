"""Bulk loading a data set file into the configured tiers (``twotier load``, the bench)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from twotier.bootstrap import build_policy
from twotier.config import Settings
from twotier.dataset import CsvReader


async def load_csv(
    settings: Settings,
    path: Path,
    *,
    strict: bool = False,
    replace: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[CsvReader, int]:
    """Load ``path``; return the reader (counts, bad rows) and how many rows were loaded.

    ``on_progress`` is called now and then with the bytes read so far.
    """
    with path.open("rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        progress = (lambda _line: on_progress(raw.tell())) if on_progress else None
        reader = CsvReader(text, on_progress=progress)
        policy = build_policy(settings)
        try:
            await policy.prepare()
            loaded = await policy.bulk_load(
                reader, replace=replace, keep=lambda: not (strict and reader.bad_count)
            )
        finally:
            await policy.close()
    return reader, loaded
