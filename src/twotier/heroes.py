"""The superhero resource: its validated models, its row record and its JSON encoding.

The shape is the seed's ``createTable.sql``: ``id, name, hero, power, xp, color`` with
VARCHAR(20) text and an unsigned int ``xp``. Rows also carry a ``version`` that grows with
every write; it is what makes cache fills safe (see ``policy.py``), and it is never part of
the JSON a client sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

TEXT_MAX = 20
UINT_MAX = 4_294_967_295
FIELDS = ("name", "hero", "power", "xp", "color")


def _storable(value: str) -> str:
    # Every database must store the text exactly: lone surrogates cannot be encoded as
    # UTF-8 at all. (NUL, which PostgreSQL refuses, is kept out by the schema's pattern.)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    return value


def whole_number(value: object) -> object:
    """JSON Schema calls 5.0 an integer; so do we (but not 5.5, "5" or true)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: No NUL characters (PostgreSQL refuses them): in the schema, so clients can see it.
NO_NUL = "^[^\\x00]*$"
Text = Annotated[
    str, Field(max_length=TEXT_MAX, strict=True, pattern=NO_NUL), AfterValidator(_storable)
]
Xp = Annotated[int, Field(ge=0, le=UINT_MAX, strict=True), BeforeValidator(whole_number)]
HeroId = Annotated[int, Field(ge=1, le=UINT_MAX)]


class HeroIn(BaseModel):
    """A whole hero as a client sends it (POST, PUT, the seed's batch write)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Text
    hero: Text
    power: Text
    xp: Xp
    color: Text


class HeroPatch(BaseModel):
    """Some fields of a hero (PATCH, as a JSON merge patch): absent fields are left as they
    are; nothing is nullable, so a null changes nothing either; an empty patch is a no-op."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Text | None = None
    hero: Text | None = None
    power: Text | None = None
    xp: Xp | None = None
    color: Text | None = None

    def changes(self) -> dict[str, Any]:
        """The fields the client set, without the ones explicitly null (nothing is nullable)."""
        return {k: v for k, v in self.model_dump(exclude_unset=True).items() if v is not None}


class Hero(HeroIn):
    """A stored hero as the API returns it."""

    id: HeroId


class HeroPage(BaseModel):
    """One page of ``GET /heroes``; pass ``next_after`` as ``after`` to get the next page."""

    items: list[Hero]
    next_after: int | None


@dataclass(frozen=True, slots=True)
class HeroRecord:
    """A row as the store holds it, with its version."""

    id: int
    name: str
    hero: str
    power: str
    xp: int
    color: str
    version: int

    def public(self) -> dict[str, Any]:
        """The client-facing fields, in the seed's column order."""
        return {
            "id": self.id,
            "name": self.name,
            "hero": self.hero,
            "power": self.power,
            "xp": self.xp,
            "color": self.color,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.public())

    def replaced(self, changes: dict[str, Any]) -> HeroRecord:
        """This row after an update that sets ``changes`` and bumps the version."""
        values = {k: getattr(self, k) for k in FIELDS} | changes
        return HeroRecord(id=self.id, version=self.version + 1, **values)
