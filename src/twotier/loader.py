"""Bulk loading a data set file into one resource of the configured tiers (``twotier load``,
the bench)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from twotier.bootstrap import build_service
from twotier.config import Settings
from twotier.dataset import CsvReader


async def load_csv(
    settings: Settings,
    path: Path,
    resource: str | None = None,
    *,
    strict: bool = False,
    replace: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[CsvReader, int]:
    """Load ``path`` into ``resource`` (the default one when None); return the reader
    (counts, bad rows) and how many rows were loaded.

    ``on_progress`` is called now and then with the bytes read so far.
    """
    service = build_service(settings)
    try:
        name = resource or service.default_resource
        declared = service.resource(name).resource
        with path.open("rb") as raw:
            # utf-8-sig: a byte order mark (spreadsheets write one) is not the header's.
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            progress = (lambda _line: on_progress(raw.tell())) if on_progress else None
            reader = CsvReader(text, declared, on_progress=progress)
            await service.prepare()
            loaded = await service.load(
                name, reader, replace=replace, keep=lambda: not (strict and reader.bad_count)
            )
    finally:
        await service.close()
    return reader, loaded
