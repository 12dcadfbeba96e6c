"""``twotier keys``: create, list and revoke API keys in the configured database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from twotier.access.keys import Role, check_key_name, printable
from twotier.bootstrap import build_service
from twotier.cli_output import console, told
from twotier.config import get_settings
from twotier.errors import ResourceError, TwotierError
from twotier.service import Service

T = TypeVar("T")

app = typer.Typer(
    help="API keys: X-API-Key values with a role (read, write or admin).", no_args_is_help=True
)


def _with_service(action: Callable[[Service], Awaitable[T]]) -> T:
    try:
        service = build_service(get_settings())
    except ResourceError as error:
        told(error)

    async def run() -> T:
        try:
            await service.prepare()
            return await action(service)
        finally:
            await service.close()

    try:
        return asyncio.run(run())
    except TwotierError as error:
        told(error)


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
    record, token = _with_service(lambda service: service.create_key(name, role))
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
    keys = _with_service(lambda service: service.list_keys())
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
    if not _with_service(lambda service: service.revoke_key(key_id)):
        console.print(Text(f"no active key {printable(key_id)}", style="red"))
        raise typer.Exit(1)
    console.print(Text(f"revoked key {printable(key_id)}"))
