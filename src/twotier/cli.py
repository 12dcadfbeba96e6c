"""The ``twotier`` command: serve the API, manage the schema, make sample data."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Coroutine
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.progress import DownloadColumn, Progress
from rich.text import Text

from twotier import logs
from twotier.bootstrap import build_service
from twotier.cli_keys import app as keys_app
from twotier.cli_output import console, told
from twotier.config import Settings, get_settings
from twotier.dataset import SPAN_DEFAULT, CsvReader, open_source, write_csv
from twotier.errors import (
    ResourceError,
    SchemaMismatch,
    StoreUnavailable,
    TwotierError,
    UnknownResource,
)
from twotier.loader import load_csv
from twotier.logs import redacted_url
from twotier.problems import problem_of
from twotier.resources import Resource
from twotier.resources.introspected import Introspected, declaration_text
from twotier.service import Service
from twotier.store.base import Detachment, SchemaChange

T = TypeVar("T")

APP_FACTORY = "twotier.api.app:serve_app"


def _settings_help() -> str:
    lines = ["Configuration comes from the environment:\n\n"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        lines.append(f"TWOTIER_{name.upper()} (default {default!r}): {field.description}\n\n")
    return "".join(lines)


app = typer.Typer(
    help="twotier: a CRUD API over a database with a cache in front.",
    epilog=_settings_help(),
    no_args_is_help=True,
    rich_markup_mode=None,
)


db_app = typer.Typer(help="The database schema and sample data.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")


def _bench() -> None:
    """``twotier bench``: the harness where it is installed (a checkout, ``make install``);
    the server image and the Lambda package leave it out, and the command says so."""
    try:
        from twotier.bench.cli import app as bench
    except ModuleNotFoundError as missing:
        if missing.name != "twotier.bench":
            raise
    else:
        app.add_typer(bench, name="bench")
        return

    @app.command(
        "bench",
        help="Benchmarks: not in this install.",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def not_here() -> None:
        console.print(
            Text(
                "twotier bench is not in this install (the server image and the Lambda "
                "package leave the harness out): run it from a checkout, after make install",
                style="red",
            )
        )
        raise typer.Exit(2)


_bench()


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class Server(StrEnum):
    granian = "granian"
    uvicorn = "uvicorn"


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(envvar="TWOTIER_HOST", help="Address to listen on.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="TWOTIER_PORT", help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, envvar="TWOTIER_WORKERS", help="Worker processes.")
    ] = 1,
    server: Annotated[
        Server, typer.Option(help="The ASGI server (granian measured fastest; see benchmarks).")
    ] = Server.granian,
    log_level: Annotated[
        LogLevel, typer.Option(envvar="TWOTIER_LOG_LEVEL", help="Least severe level logged.")
    ] = LogLevel.info,
    follow: Annotated[
        bool | None,
        typer.Option(
            "--follow/--no-follow",
            help="Run the change-log follower in the server (default: TWOTIER_FOLLOW, "
            "auto: on for SQLite).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (tiers chosen by TWOTIER_DATABASE_URL and TWOTIER_CACHE_URL)."""
    # Worker processes read the level from the environment (serve_app), as do the settings
    # this process reads below (and its workers may inherit them): set it first.
    os.environ["TWOTIER_LOG_LEVEL"] = log_level.value
    if follow is not None:
        os.environ["TWOTIER_FOLLOW"] = "on" if follow else "off"
    get_settings.cache_clear()
    logs.configure(log_level.value)
    _check_port(host, port)
    _prepare_schema()  # a declaration that cannot be served stops here, in one line
    if workers > 1 and get_settings().cache_url.startswith("memory:"):
        # Each worker would keep its own cache, and miss the others' writes.
        console.print(
            "[red]--workers > 1 needs a shared cache: set TWOTIER_CACHE_URL=redis://…[/red]"
        )
        raise typer.Exit(2)
    if importlib.util.find_spec(server.value) is None:
        console.print(
            Text(f"{server.value} is not installed: pip install 'twotier[server]'", style="red")
        )
        raise typer.Exit(2)
    if server is Server.granian:
        _serve_granian(host, port, workers, log_level.value)
    else:
        _serve_uvicorn(host, port, workers, log_level.value)


@app.command()
def follow(
    lease: Annotated[
        float,
        typer.Option(min=1, help="Seconds a dead follower's lease keeps others waiting."),
    ] = 5.0,
    emf_every: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds between CloudWatch EMF lines of its metrics on stdout (0: none; "
            "the CDK stacks' follower sets 60).",
        ),
    ] = 0.0,
    log_level: Annotated[
        LogLevel, typer.Option(envvar="TWOTIER_LOG_LEVEL", help="Least severe level logged.")
    ] = LogLevel.info,
) -> None:
    """Follow the database's change log (MySQL, MariaDB, Aurora MySQL: the binary log;
    PostgreSQL: logical decoding; SQLite: its change table; DynamoDB: Streams) and
    invalidate what each committed change makes stale, whoever wrote it. Runs until
    stopped (SIGTERM, Ctrl-C); any number may run, one follows (a lease in the cache)."""
    from twotier.emf import report_every
    from twotier.follow.follower import Follower
    from twotier.follow.sources import change_log_for

    logs.configure(log_level.value)
    service = _service()

    async def run() -> None:
        try:
            # The schema is db init's (or a server's): the follower's own user may only read.
            await service.prepare(schema=False)
            change_log = change_log_for(service, get_settings().cache_namespace)
            await change_log.prepare()  # one that cannot be followed stops here, in one line
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for number in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(number, stop.set)
            work = [Follower(service, change_log, lease=lease).run(stop)]
            if emf_every:
                work.append(report_every(stop, emf_every))
            try:
                await asyncio.gather(*work)
            finally:
                await change_log.close()
        finally:
            await service.close()

    _run(run())


def _check_port(host: str, port: int) -> None:
    """Refuse a port another process listens on, in one line: granian binds with
    SO_REUSEPORT, which would share it, and requests would then alternate between the two
    servers."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        console.print(Text(f"cannot serve on {host}:{port}: {error.strerror}", style="red"))
        raise typer.Exit(2) from None
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            # A port left in TIME_WAIT by a server just stopped is free; a listening one not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                console.print(
                    Text(
                        f"cannot serve on {host}:{port}: {error.strerror} (another server "
                        "listens there: stop it, or choose another --port)",
                        style="red",
                    )
                )
                raise typer.Exit(2) from None


def _serve_granian(host: str, port: int, workers: int, log_level: str) -> None:
    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server import Server as Granian

    # Granian drains in-flight requests on SIGTERM/SIGINT, then returns.
    Granian(
        APP_FACTORY,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        factory=True,
        websockets=False,
        log_level=LogLevels(log_level),
        log_dictconfig=logs.dict_config(log_level),
        workers_kill_timeout=10,
    ).serve()


def _serve_uvicorn(host: str, port: int, workers: int, log_level: str) -> None:
    import uvicorn

    # uvicorn drains in-flight requests on SIGTERM/SIGINT, then re-raises the signal to the
    # handler that was there before it; make that one a clean exit, as orchestrators expect.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _exit_cleanly)
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        log_config=logs.dict_config(log_level),
        access_log=False,  # the app writes its own, richer, access log
        timeout_graceful_shutdown=10,
    )


ResourceOption = Annotated[
    str | None,
    typer.Option(
        "--resource", help="The declared resource (default: heroes, or the first one declared)."
    ),
]


def _service() -> Service:
    """The configured service; a declaration that cannot be served is one line and exit 2."""
    try:
        return build_service(get_settings())
    except ResourceError as error:
        told(error)
    except ValueError as error:  # a database URL no store takes (its scheme, a parameter)
        console.print(Text(str(error), style="red"))
        raise typer.Exit(2) from None


def _prepare_schema() -> None:
    """Create or adopt the declared tables before serving: a declaration the database
    contradicts stops here in one line. With the database down, serving starts all the
    same (and recovers when it is back)."""
    try:
        asyncio.run(_prepared(_service()))
    except StoreUnavailable as error:
        console.print(Text(f"the database is unreachable, serving anyway: {error}", style="yellow"))
    except SchemaMismatch as error:
        _refused(error)


def _refused(error: SchemaMismatch) -> NoReturn:
    """Every contradiction between the declarations and the database, one line each; exit 2."""
    for problem in error.problems:
        console.print(Text(problem, style="red"))
    count = len(error.problems)
    console.print(
        Text(f"{count} contradiction{'s' if count > 1 else ''}: nothing was changed", style="red")
    )
    raise typer.Exit(problem_of(error).exit_code)


async def _prepared(service: Service) -> None:
    """Create or adopt the schema, then let the service go."""
    try:
        await service.prepare()
    finally:
        await service.close()


def _resource(service: Service, name: str | None) -> Resource:
    try:
        return service.resource(name or service.default_resource).resource
    except UnknownResource:
        console.print(
            Text(f"no resource {name!r} (resources: {', '.join(service.resources)})", style="red")
        )
        raise typer.Exit(2) from None


@db_app.command("init")
def db_init(
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            "--plan",
            help="Only print what would change, each change with the statements that make "
            "it (every contradiction too), running none.",
        ),
    ] = False,
) -> None:
    """Create the database, and every declared table and its indexes, if they are missing;
    adopt tables that exist (idempotent): prints each change. A declaration a table
    contradicts changes nothing, and every contradiction is printed. With
    TWOTIER_FOLLOW=on, also what the follower needs (PostgreSQL: the publication and the
    replication slot; DynamoDB: Streams). `db detach` takes it out again."""
    from twotier.follow.sources import change_log_for

    service = _service()
    settings = get_settings()

    async def run() -> list[SchemaChange]:
        try:
            if dry_run:
                return await service.plan_schema()
            changes = await service.prepare()
            if settings.follow == "on":  # what the follower needs: the PostgreSQL slot
                await change_log_for(service, settings.cache_namespace).prepare()
            return changes
        finally:
            await service.close()

    changes = _run(run())
    if dry_run:
        if not changes:
            console.print(f"nothing to change in {_safe_url()}")
            return
        console.print(f"-- db init would make {len(changes)} changes in {_safe_url()}:")
        _print_statements(changes)
        return
    for change in changes:
        console.print(Text(change.line))
    console.print(f"schema ready in {_safe_url()}: {', '.join(service.resources)}")


@db_app.command("detach")
def db_detach(
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Only print what would be removed, running nothing."),
    ] = False,
) -> None:
    """Take out of the database what twotier added for its own use: the version column
    and its triggers, twotier's own tables (API keys included), the follower's
    publication, replication slots and user. Every row of your tables stays as it was; a
    table or column twotier made for a declared resource stays too (it holds your data),
    and is named. Stop twotier's servers and followers first."""
    service = _service()

    async def run() -> Detachment:
        try:
            return await service.detach(dry_run=dry_run)
        finally:
            await service.close()

    detachment = _run(run())
    if dry_run:
        if not detachment.removed:
            console.print(f"-- nothing of twotier's in {_safe_url()}")
        else:
            count = len(detachment.removed)
            console.print(f"-- db detach would make {count} changes in {_safe_url()}:")
            _print_statements(detachment.removed)
    else:
        for change in detachment.removed:
            console.print(Text(change.line))
        console.print(f"twotier detached from {_safe_url()}")
    for line in detachment.kept:
        console.print(Text(f"-- {line}" if dry_run else line))


def _print_statements(changes: list[SchemaChange]) -> None:
    """On stdout, as a script to read or keep (``> plan.sql``): each change as a comment
    line, then its statements, each ending with ``;``."""
    for change in changes:
        sys.stdout.write(f"-- {change.line}\n")
        for statement in change.statements:
            sys.stdout.write(f"{statement};\n")


@db_app.command("introspect")
def db_introspect(
    tables: Annotated[
        str | None,
        typer.Option(help="Only these tables, by name, separated by commas (default: all)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Write the declaration to this file (default: print it)."),
    ] = None,
) -> None:
    """Write the declaration of the database's own tables (TWOTIER_DATABASE_URL): each
    table with a primary key, with its columns' types, lengths, ranges, nullability and
    defaults, its automatic id, its indexed columns as lookups and its foreign keys as
    relations; what cannot be served is left out with a comment saying why. Changes
    nothing in the database. Serve it as it is: TWOTIER_RESOURCES=FILE twotier db init,
    then twotier serve."""
    wanted = [name.strip() for name in tables.split(",") if name.strip()] if tables else None
    service = _service()

    async def run() -> list[Introspected]:
        try:
            return await service.introspect(wanted)
        finally:
            await service.close()

    found = _run(run())
    served = [item for item in found if item.settings is not None]
    if not served:
        why = "; ".join(f"{item.table}: {item.left_out}" for item in found)
        console.print(
            Text(
                f"no table here that twotier can serve ({why})" if found else "no table here",
                style="red",
            )
        )
        raise typer.Exit(2)
    text = declaration_text(found, _safe_url())
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
    summary = f"{len(served)} of {len(found)} tables declared"
    if out is not None:
        summary += f" in {out}"
    left = [item.table for item in found if item.settings is None]
    if left:
        summary += f"; left out (the file says why): {', '.join(left)}"
    console.print(summary)


@db_app.command("sample")
def db_sample(
    rows: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="How many rows to add (default: as many as the resource's `samples`, or 1000 "
            "with --resource).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the generated data.")] = 0,
    force: Annotated[bool, typer.Option(help="Add rows even if the table has some.")] = False,
    resource: ResourceOption = None,
) -> None:
    """Fill empty tables with generated rows, through the cache's write-through: each
    resource that declares `samples` (the built-in heroes), or the one --resource names.
    A table that holds rows is left alone, unless --force."""
    service = _service()
    if resource is not None:
        wanted = [(_resource(service, resource), rows or 1000)]
    else:
        wanted = [
            (declared, rows or declared.samples)
            for declared in (_resource(service, name) for name in service.resources)
            if declared.samples
        ]
        if not wanted:
            console.print(
                "no resource asks for sample rows (`samples = N` in its declaration); "
                "name one with --resource to fill it"
            )
            return

    async def run() -> list[int]:
        try:
            await service.prepare()
            return [
                await service.add_samples(declared.name, count, seed=seed, force=force)
                for declared, count in wanted
            ]
        finally:
            await service.close()

    for (declared, _), added in zip(wanted, _run(run()), strict=True):
        if added:
            console.print(f"added {added} sample {declared.name} to {_safe_url()}")
        else:
            console.print(
                f"the table already holds {declared.name}; no sample added (use --force to add)"
            )


@app.command("generate")
def generate_csv(
    out: Annotated[Path, typer.Argument(help="The CSV file to write.")],
    rows: Annotated[int, typer.Option(min=1, help="How many rows.")] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same file.")] = 0,
    span: Annotated[
        int,
        typer.Option(
            "--span",
            "--xp-max",
            min=1,
            help="Whole numbers are drawn from this many values (the heroes' xp: 0 … span-1).",
        ),
    ] = SPAN_DEFAULT,
    resource: ResourceOption = None,
) -> None:
    """Write a data set of a resource: a header of its fields, then generated rows (for the
    heroes, the seed's mp6data.csv shape: id,name,hero,power,xp,color)."""
    declared = _resource(_service(), resource)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as target:
        write_csv(target, declared, rows, seed, span)
    console.print(f"wrote {rows} {declared.name} to {out}")


@app.command()
def load(
    source: Annotated[str, typer.Argument(help="A CSV file, or an s3://bucket/key URL.")],
    strict: Annotated[bool, typer.Option(help="Load nothing if any row is bad.")] = False,
    replace: Annotated[
        bool, typer.Option(help="Empty the table first (same transaction).")
    ] = False,
    resource: ResourceOption = None,
) -> None:
    """Bulk-load a data set (with or without its header line) into a resource's table.

    Rows whose key exists replace it. Bad rows are reported with their line numbers and
    skipped (or, with --strict, nothing is loaded). Entries of the configured cache are
    forgotten, so no stale value survives the load.
    """
    settings = get_settings()
    declared = _resource(_service(), resource)
    with tempfile.TemporaryDirectory(prefix="twotier-source-") as work:
        try:
            path = open_source(source, Path(work))
        except (OSError, ValueError) as error:
            console.print(Text(f"cannot read {source}: {error}", style="red"))
            raise typer.Exit(2) from error
        reader, loaded, seconds = _load_with_progress(
            settings, path, declared.name, strict, replace
        )
    for bad in reader.bad[:20]:
        console.print(Text(f"line {bad.line}: {bad.reason}"))
    if reader.bad_count > 20:
        console.print(f"… and {reader.bad_count - 20} more bad rows")
    header = "with" if reader.header else "without"
    console.print(
        f"read {reader.valid + reader.bad_count} rows ({header} header): {loaded} loaded, "
        f"{reader.bad_count} bad, in {seconds:.1f} s"
    )
    if reader.bad_count and strict:
        console.print("[red]--strict: nothing was loaded[/red]")
        raise typer.Exit(1)


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run a command's work; an error is one line (every contradiction, one a line) and the
    exit code ``problems`` gives it: 1 for a fault worth retrying (an unreachable database),
    2 for a declaration or a database to change first."""
    try:
        return asyncio.run(work)
    except SchemaMismatch as error:
        _refused(error)
    except TwotierError as error:
        told(error)


def _load_with_progress(
    settings: Settings, path: Path, resource: str, strict: bool, replace: bool
) -> tuple[CsvReader, int, float]:
    size = path.stat().st_size
    with Progress(
        *Progress.get_default_columns(), DownloadColumn(), console=console, transient=True
    ) as progress:
        task = progress.add_task(f"loading {path.name}", total=size)
        started = time.perf_counter()
        reader, loaded = _run(
            load_csv(
                settings,
                path,
                resource,
                strict=strict,
                replace=replace,
                on_progress=lambda done: progress.update(task, completed=done),
            )
        )
        progress.update(task, completed=size)
    return reader, loaded, time.perf_counter() - started


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _safe_url() -> str:
    """The database URL without its password, fit for a terminal or a log."""
    return redacted_url(get_settings().database_url)
