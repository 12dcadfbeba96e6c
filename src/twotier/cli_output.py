"""What the CLI's commands print: one console on stderr, and an error as one line with
the exit code ``problems`` gives it."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

from twotier.errors import TwotierError
from twotier.problems import problem_of

console = Console(stderr=True, soft_wrap=True)  # one message, one line: logs and greps


def told(error: TwotierError) -> NoReturn:
    """An error as one line, and the exit code ``problems`` gives it."""
    said = problem_of(error)
    console.print(Text(said.detail, style="red"))
    raise typer.Exit(said.exit_code) from None
