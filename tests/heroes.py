"""The seed's heroes for tests: the built-in resource and valid rows of it."""

from __future__ import annotations

from typing import Any

from twotier.resources import Record, load_resources
from twotier.store.base import Rows

[HEROES] = load_resources(None)
UINT_MAX = 4_294_967_295


def hero(name: str = "Ada", xp: int = 10, **fields: object) -> dict[str, Any]:
    """A new hero as a client would send it, checked by the resource's own model."""
    values: dict[str, Any] = {
        "name": name,
        "hero": "Captain Ada",
        "power": "math",
        "xp": xp,
        "color": "blue",
    }
    values.update(fields)
    return HEROES.create_model.model_validate(values).model_dump()


async def create(rows: Rows, *made: dict[str, Any]) -> Record:
    """Insert one row (the first of ``made``, or a default hero) and return it."""
    return (await rows.create_many([made[0] if made else hero()]))[0]


async def create_each(rows: Rows, made: list[dict[str, Any]]) -> list[Record]:
    """Insert rows one at a time (where the test is not about batches: dynalite has no
    transactions for a batch) and return them."""
    return [await create(rows, values) for values in made]
