"""``twotier keys``: create, list and revoke API keys in the configured database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from twotier.access.keys import Role, check_key_name, create_key, printable
from twotier.bootstrap import build_store
from twotier.config import get_settings
from twotier.store.base import StoreUnavailable
from twotier.store.sql import SQLStore

T = TypeVar("T")

console = Console(stderr=True)
app = typer.Typer(
    help="API keys: X-API-Key values with a role (read, write or admin).", no_args_is_help=True
)


def _with_store(action: Callable[[SQLStore], Awaitable[T]]) -> T:
    async def run() -> T:
        store = build_store(get_settings())
        try:
            await store.init_schema()
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except StoreUnavailable as error:
        console.print(f"[red]the database is unreachable: {error}[/red]")
        raise typer.Exit(1) from None


@app.command("create")
def create(
    role: Annotated[Role, typer.Option(help="What the key may do.")] = Role.READ,
    name: Annotated[str, typer.Option(help="Who or what the key is for.")] = "",
) -> None:
    """Make a key and print it (on stdout, once: only its hash is kept)."""
    name = name or f"{role.value} key"
    try:
        check_key_name(name)
    except ValueError as error:
        console.print(Text(f"--name: {error}", style="red"))
        raise typer.Exit(2) from None
    record, token = _with_store(lambda store: create_key(store, name, role))
    console.print(
        Text(
            f"created key {record.id} ({printable(record.name)!r}, role {record.role}); it is "
            "shown once, now: send it as the X-API-Key header"
        )
    )
    typer.echo(token)


@app.command("list")
def list_keys(
    all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
) -> None:
    """The keys (ids, names, roles, dates; never the keys themselves)."""
    keys = _with_store(lambda store: store.list_keys())
    table = Table("id", "name", "role", "created", "revoked")
    for key in keys:
        if key.active or all_keys:
            revoked = f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else ""
            # Text, not markup: a name is shown as it is, escapes and all.
            table.add_row(
                Text(key.id),
                Text(printable(key.name)),
                Text(key.role),
                f"{key.created_at:%Y-%m-%d %H:%M}",
                revoked,
            )
    Console().print(table)


@app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (from `keys list`).")]) -> None:
    """Revoke a key: every server stops taking it within TWOTIER_API_KEY_REFRESH seconds."""
    if not _with_store(lambda store: store.revoke_key(key_id, datetime.now(UTC))):
        console.print(Text(f"no active key {printable(key_id)}", style="red"))
        raise typer.Exit(1)
    console.print(Text(f"revoked key {printable(key_id)}"))
