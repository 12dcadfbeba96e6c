"""The ``twotier`` command: serve the API, manage the schema, make sample data."""

from __future__ import annotations

import asyncio
import logging
import signal
from itertools import islice
from typing import Annotated

import typer
from rich.console import Console

from twotier.bootstrap import build_store
from twotier.config import Settings, get_settings
from twotier.dataset import generate

console = Console(stderr=True)


def _settings_help() -> str:
    lines = ["Configuration comes from the environment:\n\n"]
    for name, field in Settings.model_fields.items():
        lines.append(f"TWOTIER_{name.upper()} (default {field.default!r}): {field.description}\n\n")
    return "".join(lines)


app = typer.Typer(
    help="twotier: a CRUD API over a database with a cache in front.",
    epilog=_settings_help(),
    no_args_is_help=True,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="The database schema and sample data.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the HTTP API (tiers chosen by TWOTIER_DATABASE_URL and TWOTIER_CACHE_URL)."""
    import uvicorn

    # uvicorn drains in-flight requests on SIGTERM/SIGINT, then re-raises the signal to the
    # handler that was there before it; make that one a clean exit, as orchestrators expect.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _exit_cleanly)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        "twotier.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        timeout_graceful_shutdown=10,
    )


@db_app.command("init")
def db_init() -> None:
    """Create the database, the table and its indexes if they are missing (idempotent)."""

    async def run() -> None:
        store = build_store(get_settings())
        try:
            await store.init_schema()
        finally:
            await store.close()

    asyncio.run(run())
    console.print(f"schema ready in {_safe_url()}")


@db_app.command("sample")
def db_sample(
    rows: Annotated[int, typer.Option(min=1, help="How many heroes to add.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed of the generated data.")] = 0,
    force: Annotated[bool, typer.Option(help="Add rows even if the table has some.")] = False,
) -> None:
    """Fill an empty table with generated heroes (skipped if it holds rows, unless --force)."""

    async def run() -> int:
        store = build_store(get_settings())
        try:
            await store.init_schema()
            if not force and await store.count():
                return 0
            heroes = generate(rows, seed)
            while chunk := list(islice(heroes, 5000)):
                await store.create_many(chunk)
            return rows
        finally:
            await store.close()

    added = asyncio.run(run())
    if added:
        console.print(f"added {added} sample heroes to {_safe_url()}")
    else:
        console.print("the table already holds heroes; no sample added (use --force to add)")


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _safe_url() -> str:
    """The database URL without its password, fit for a terminal or a log."""
    from sqlalchemy import make_url

    return make_url(get_settings().database_url).render_as_string(hide_password=True)
