"""A query parameter of an endpoint: its name, the one validator of its text, its default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter


@dataclass(frozen=True, slots=True)
class Parameter:
    """A query parameter: its name, the one validator of its text, its default."""

    name: str
    adapter: TypeAdapter[Any]
    default: Any = None
    description: str = ""
