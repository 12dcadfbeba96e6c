"""A statement compiled for one database, as data: its SQL, the names of its values in the
order the driver takes them, and the conversions its values need on the way in.

The statements that run per request are built from SQLAlchemy Core constructs
(``sql_compile``), and SQLAlchemy's import is a third of a Lambda function's cold start.
So a statement, once compiled, is plain data that can be kept (``sql_book``: in the
database's meta table, beside the digest of the schema it was compiled for) and run
without SQLAlchemy. Its conversions are named functions of this module: the ones MySQL's
and PostgreSQL's dialects would apply (a test holds each equal to the dialect's own). A
SQLite statement keeps the dialect's own processors and is never kept: SQLite runs on the
engine, which has SQLAlchemy loaded anyway.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: twotier's own column: grows with every write of the row (see ``versions``).
VERSION = "version"
#: The names the key, the expected version and a limit are bound under in a row's
#: statements: a field's name starts with a letter, so none is ever one of these (a field
#: named ``at`` would else have taken the version's value).
KEY = "_key"
AT = "_at"
LIMIT = "_limit"

Row = tuple[Any, ...]
Processor = Callable[[Any], Any]
#: A value's conversion by its position (in a statement's values, or a row's columns).
Conversion = tuple[int, Processor]


def _strict_bool(value: Any) -> Any:
    if value not in (None, True, False):
        if not isinstance(value, int):
            raise TypeError(f"Not a boolean value: {value!r}")
        raise ValueError(f"Value {value!r} is not None, True, or False")
    return value


def bool_as_int(value: Any) -> int | None:
    """A boolean where the database has none (MySQL's ``TINYINT``)."""
    value = _strict_bool(value)
    return None if value is None else int(value)


def bool_as_bool(value: Any) -> bool | None:
    """A boolean where the database has its own (PostgreSQL)."""
    value = _strict_bool(value)
    return None if value is None else bool(value)


def json_text(value: Any) -> str | None:
    """A JSON document as the text the column takes (None: SQL's NULL), spelled as
    SQLAlchemy spells it, so that a ``json`` column keeps the same text either way."""
    return None if value is None else json.dumps(value)


def as_bytes(value: Any) -> bytes | None:
    """Bytes as MySQL's driver takes them (its DB-API ``Binary``)."""
    return None if value is None else bytes(value)


def int_as_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def as_float(value: Any) -> float | None:
    return None if value is None else float(value)


def time_of_day(value: Any) -> datetime.time | None:
    """MySQL's ``TIME`` as the driver hands it over (a timedelta) as a time of day."""
    if value is None:
        return None
    minutes = value.seconds // 60
    return datetime.time(
        minutes // 60, minutes % 60, value.seconds - minutes * 60, microsecond=value.microseconds
    )


def json_value(value: Any) -> Any:
    return None if value is None else json.loads(value)


def uuid_text(value: Any) -> Any:
    """asyncpg hands a UUID over as an object; twotier keeps its text."""
    return None if value is None else str(value)


#: Every conversion a kept statement may name.
NAMED: dict[str, Processor] = {
    f.__name__: f
    for f in (
        bool_as_int,
        bool_as_bool,
        json_text,
        as_bytes,
        int_as_bool,
        as_float,
        time_of_day,
        json_value,
        uuid_text,
    )
}


def converted(row: Row, conversions: tuple[Conversion, ...]) -> Row:
    """``row`` with ``conversions`` applied."""
    if not conversions:
        return row
    values = list(row)
    for index, processor in conversions:
        values[index] = processor(values[index])
    return tuple(values)


def named(conversions: Sequence[Conversion]) -> list[tuple[int, str]] | None:
    """``conversions`` by name (None if one is not among ``NAMED``: a SQLite dialect's)."""
    found = []
    for index, processor in conversions:
        name = getattr(processor, "__name__", "")
        if NAMED.get(name) is not processor:
            return None
        found.append((index, name))
    return found


def by_name(conversions: Sequence[Sequence[Any]]) -> tuple[Conversion, ...]:
    """``named``'s answer back as conversions; KeyError for a name this version lacks."""
    return tuple((int(index), NAMED[str(name)]) for index, name in conversions)


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement compiled for one database: its SQL, the names of its values in order
    (``params``), the values the construct itself gives (a ``version + 1``'s literal), and
    the conversions of the values the driver does not take as they are (by position)."""

    sql: str
    params: tuple[str, ...]
    defaults: Mapping[str, Any]
    binds: tuple[Conversion, ...]
    returns_rows: bool

    def args(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        defaults = self.defaults
        args = [values[n] if n in values else defaults[n] for n in self.params]
        for index, processor in self.binds:
            if args[index] is not None:
                args[index] = processor(args[index])
        return tuple(args)

    def kept(self) -> dict[str, Any] | None:
        """The statement as data to keep (None if it cannot be: a conversion without a name,
        a literal that is not plain JSON)."""
        binds = named(self.binds)
        if binds is None or not _plain(self.defaults):
            return None
        return {
            "sql": self.sql,
            "params": list(self.params),
            "defaults": dict(self.defaults),
            "binds": binds,
            "returns_rows": self.returns_rows,
        }

    @classmethod
    def from_kept(cls, kept: Mapping[str, Any]) -> Statement:
        return cls(
            sql=str(kept["sql"]),
            params=tuple(str(name) for name in kept["params"]),
            defaults=dict(kept["defaults"]),
            binds=by_name(kept["binds"]),
            returns_rows=bool(kept["returns_rows"]),
        )


def _plain(values: Mapping[str, Any]) -> bool:
    return all(
        value is None or (type(value) in (int, str, float, bool)) for value in values.values()
    )
