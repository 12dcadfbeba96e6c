"""A resource's fields: what each declared type means, once, for every tier.

A field knows how a client's JSON value is validated (a pydantic annotation, which also gives
the OpenAPI schema), how it is stored (an SQLAlchemy type, the same on every dialect where it
can be: SQLAlchemy is imported when one is made, so a process that only validates never
loads it), how it reads from and writes to a CSV file, and what a generated sample looks like.
Everything else (models, tables, loaders, encoders) is derived from these.
"""

from __future__ import annotations

import base64
import binascii
import math
import random
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import orjson
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)

if TYPE_CHECKING:  # SQLAlchemy is imported where a column type is made, not to validate
    from sqlalchemy.types import TypeEngine

INT32 = (-(2**31), 2**31 - 1)
UINT32_MAX = 2**32 - 1
INT64 = (-(2**63), 2**63 - 1)
#: The whole numbers JSON carries exactly everywhere (I-JSON, RFC 7493: a client's doubles):
#: an integer field's range when its declaration gives none.
SAFE_INTEGERS = (-(2**53 - 1), 2**53 - 1)
#: Longest string kept in a VARCHAR; longer ones are TEXT (and cannot be keys or lookups).
VARCHAR_MAX = 16_383
#: No NUL characters (PostgreSQL refuses them): in the schema, so clients can see it.
NO_NUL = "^[^\\x00]*$"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def whole_number(value: object) -> object:
    """JSON Schema calls 5.0 an integer; so do we (but not 5.5, "5" or true)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
#: A number as JSON writes one (RFC 8259), and nothing else.
_NUMBER_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _signless_zero(value: float) -> float:
    """-0.0 is 0.0 to every database (and to a lookup or a filter on it): one value."""
    return value + 0.0


def integer_text(value: object) -> object:
    """An integer given as text (a path segment, a query parameter) must be only that:
    Python's ``int`` would take ``" 7"`` or ``"7\n"``, which the OpenAPI schema refuses
    (and which names no other key than ``7``)."""
    if isinstance(value, str) and not _INTEGER_TEXT.fullmatch(value):
        raise ValueError(f"must be a whole number, not {value[:30]!r}")
    return value


def storable(value: str) -> str:
    """Every database must store the text exactly: no lone surrogates (not UTF-8 at all),
    no NUL (PostgreSQL refuses it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


#: An RFC 3339 date-time with its offset, in the years every database stores (MySQL's
#: DATETIME: 1000 to 9999) whatever the offset: 1001 to 9998 as written.
TIMESTAMP_PATTERN = (
    r"^(100[1-9]|10[1-9][0-9]|1[1-9][0-9]{2}|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
    r"-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"
)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)


def rfc3339(value: object) -> datetime:
    """An RFC 3339 date-time with its offset, as an aware UTC datetime."""
    moment = _date_time(
        value,
        _TIMESTAMP,
        "an RFC 3339 date-time with its offset, years 1001 to 9998",
        "2026-11-24T17:58:12Z",
    )
    if moment.tzinfo is None:
        raise ValueError("must carry its offset from UTC (Z or +hh:mm)")
    if not 1001 <= moment.year <= 9998:
        raise ValueError("must be in the years 1001 to 9998")
    return moment.astimezone(UTC)


def _date_time(value: object, shape: re.Pattern[str], what: str, example: str) -> datetime:
    """``value`` (a datetime, or text of ``shape``) as a datetime, to the microsecond (finer
    digits are cut, not refused: Python keeps no more); ValueError saying what it must be."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a date-time string, e.g. {example}")
    if not shape.match(value):
        raise ValueError(f"must be {what}, e.g. {example}")
    try:
        return datetime.fromisoformat(_to_microseconds(value))
    except ValueError:
        raise ValueError(f"must be a real date and time, e.g. {example.split()[0]}") from None


def _to_microseconds(text: str) -> str:
    head, dot, rest = text.partition(".")
    if not dot:
        return text
    digits = len(rest) - len(rest.lstrip("0123456789"))
    return f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"


@dataclass(frozen=True)
class FieldSpec:
    """One declared field. ``default`` is MISSING when none was declared."""

    name: str
    nullable: bool = False
    default: Any = MISSING
    #: The database fills it when a new row leaves it out (its column's own ``DEFAULT``:
    #: ``now()``, ``CURRENT_TIMESTAMP``), so a new row may leave it out.
    database_default: bool = False

    type_name: ClassVar[str] = ""

    @property
    def required(self) -> bool:
        """Must a new row give it? (No default of either kind, and not nullable.)"""
        return self.default is MISSING and not self.nullable and not self.database_default

    @property
    def indexable(self) -> bool:
        """Can it be a key or a lookup (an indexed column on every database)?"""
        return True

    def value_type(self) -> Any:
        """The pydantic annotation of a non-null value."""
        raise NotImplementedError

    def annotation(self) -> Any:
        value = self.value_type()
        return value | None if self.nullable else value

    def query_type(self) -> Any:
        """The annotation of a value given as text (a query parameter, a path segment):
        converted from the text, checked like a JSON value."""
        return self.value_type()

    def sql_type(self) -> TypeEngine[Any]:
        raise NotImplementedError

    def range(self) -> tuple[float | int | None, float | int | None]:
        """The declared bounds, checked by the database too (a CHECK constraint)."""
        return None, None

    def parse_text(self, text: str) -> Any:
        """The value a CSV cell holds; ValueError saying why it is not one."""
        if text == "" and self.nullable:
            return None
        return self.parse_value(text)

    def parse_value(self, text: str) -> Any:
        raise NotImplementedError

    def cell_pattern(self) -> str | None:
        """A regular expression that matches exactly the unquoted CSV cells (no comma in
        them) ``parse_text`` takes and returns unchanged; None where it converts them or
        checks what a pattern cannot. A bulk load checks a whole line of such cells at once
        (``dataset.CsvReader``)."""
        return None

    def to_text(self, value: Any) -> str:
        """The CSV cell for ``value`` (what ``parse_text`` reads back)."""
        return "" if value is None else str(value)

    def sample(self, rng: random.Random, span: int = 10_000) -> Any:
        """A generated value, for sample data; whole numbers are drawn from ``span`` values
        (few enough that a lookup finds several rows with one)."""
        raise NotImplementedError


def path_segment(value: str) -> str:
    """A key names a row in a path: it cannot be empty or hold a slash, whatever pattern
    its declaration gives."""
    if not value or "/" in value:
        raise ValueError("must be a path segment: not empty, no '/'")
    return value


def unpadded(value: str) -> str:
    """A fixed-length text's (a ``CHAR``'s) value: the database pads it with spaces to its
    length (PostgreSQL hands them back, MySQL trims them), so one that ends in a space
    could not be read back as written."""
    if value.endswith(" "):
        raise ValueError("must not end in a space: a fixed-length text (CHAR) pads with spaces")
    return value


def key_part(value: str) -> str:
    """A part of a composite key: a comma separates the parts in its path segment."""
    if "," in value:
        raise ValueError("is a part of a composite key: no ','")
    return value


@dataclass(frozen=True)
class StringField(FieldSpec):
    max_length: int = 255
    pattern: str | None = None
    #: A key's: its value names a row in a path (``path_segment``).
    segment: bool = False
    #: A composite key's part (``key_part``).
    part: bool = False
    #: A ``CHAR(max_length)`` column's: padded with spaces by the database, which twotier
    #: reads without them (``unpadded``, ``read``).
    fixed: bool = False
    #: An enumeration's PostgreSQL type, where its column has one (Sakila's
    #: ``mpaa_rating``): its values are bound as that type, which a text does not compare
    #: with.
    enum: str | None = None
    #: An enumeration's: the only values it takes (a CHECK where twotier makes the column;
    #: MySQL's ENUM and SQLite's CHECK where it adopts one).
    values: tuple[str, ...] | None = None

    type_name: ClassVar[str] = "string"

    @property
    def indexable(self) -> bool:
        return self.max_length <= VARCHAR_MAX

    def value_type(self) -> Any:
        if self.values is not None:
            return Literal[self.values]  # its schema lists them (``enum``)
        checks: tuple[Any, ...] = (AfterValidator(storable),)
        if self.segment:
            checks += (AfterValidator(path_segment),)
        if self.part:
            checks += (AfterValidator(key_part),)
        if self.fixed:
            checks += (AfterValidator(unpadded),)
        limits = Field(max_length=self.max_length, strict=True, pattern=self.pattern or NO_NUL)
        return Annotated[(str, limits, *checks)]

    def sql_type(self) -> TypeEngine[Any]:
        from sqlalchemy import CHAR, String, Text

        if self.enum is not None and self.values is not None:
            from sqlalchemy.dialects import postgresql  # ~25 ms: only where it is needed

            typed = postgresql.ENUM(*self.values, name=self.enum, create_type=False)
            return String(self.max_length).with_variant(typed, "postgresql")
        if self.fixed:
            return CHAR(self.max_length)
        if self.max_length > VARCHAR_MAX:
            return Text()
        return String(self.max_length)

    def read(self, value: str | None) -> str | None:
        """A value as the database hands it back, as twotier holds it (a ``CHAR``'s
        without the spaces it was padded with)."""
        return value.rstrip(" ") if self.fixed and value is not None else value

    def parse_value(self, text: str) -> Any:
        if self.values is not None and text not in self.values:
            raise ValueError(f"must be one of {', '.join(self.values)}, not {text[:30]!r}")
        if len(text) > self.max_length:
            raise ValueError(f"is longer than {self.max_length} characters")
        if "\x00" in text:
            raise ValueError("contains a NUL character")
        if self.pattern is not None or self.segment or self.fixed:
            # The API's own validator: the pattern (in linear time), a key's path rule.
            try:
                self.checked.validate_python(text)
            except ValidationError as error:
                raise ValueError(error.errors()[0]["msg"].lower()) from None
        return text

    def cell_pattern(self) -> str | None:
        # parse_value's checks of a string without pattern or path rule: its length, no NUL.
        if self.nullable or self.pattern is not None or self.segment or self.values or self.fixed:
            return None
        return f"[^,\\x00]{{0,{self.max_length}}}"

    @cached_property
    def checked(self) -> TypeAdapter[Any]:
        """A value checked as the API checks it."""
        return TypeAdapter(self.value_type())

    def sample(self, rng: random.Random, span: int = 10_000) -> Any:
        if self.values is not None:
            return rng.choice(self.values)
        words = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))
        return words.capitalize()[: self.max_length]


@dataclass(frozen=True)
class IntegerField(FieldSpec):
    minimum: int | None = None
    maximum: int | None = None

    type_name: ClassVar[str] = "integer"

    @cached_property
    def bounds(self) -> tuple[int, int]:
        """The range a value must be in: the declared one, else what JSON carries exactly
        (a BIGINT holds it all)."""
        low = SAFE_INTEGERS[0] if self.minimum is None else self.minimum
        high = SAFE_INTEGERS[1] if self.maximum is None else self.maximum
        return low, high

    def value_type(self) -> Any:
        low, high = self.bounds
        return Annotated[int, Field(ge=low, le=high, strict=True), BeforeValidator(whole_number)]

    def query_type(self) -> Any:
        low, high = self.bounds
        # The check after the bounds: before them, pydantic would lose them from the schema.
        return Annotated[int, Field(ge=low, le=high), BeforeValidator(integer_text)]

    def sql_type(self) -> TypeEngine[Any]:
        return integer_type(*self.bounds)

    def range(self) -> tuple[float | int | None, float | int | None]:
        return self.minimum, self.maximum

    def parse_value(self, text: str) -> Any:
        # Plain ASCII digits first: a bulk load's millions of cells are mostly those.
        plain = text.isdigit() and text.isascii() and len(text) <= 19
        if not plain and (not _INTEGER_TEXT.fullmatch(text) or len(text.lstrip("+-")) > 19):
            raise ValueError(f"must be a whole number, not {text[:30]!r}")
        value = int(text)
        low, high = self.bounds
        if not low <= value <= high:
            raise ValueError(f"must be a whole number from {low} to {high}, not {value}")
        return value

    def sample(self, rng: random.Random, span: int = 10_000) -> Any:
        low, high = self.bounds
        start = max(low, 0) if high >= 0 else low
        return rng.randint(start, min(high, start + span - 1))


def integer_type(low: int, high: int) -> TypeEngine[Any]:
    """The storage type a range needs: INT UNSIGNED on MySQL for 0…4294967295 (the seed's
    columns), else INTEGER within 32 bits, else BIGINT; SQLite stores every one as INTEGER."""
    from sqlalchemy import BigInteger, Integer
    from sqlalchemy.dialects import mysql

    if INT32[0] <= low and high <= INT32[1]:
        return Integer()
    base = BigInteger().with_variant(Integer(), "sqlite")
    if low >= 0 and high <= UINT32_MAX:
        return base.with_variant(mysql.INTEGER(unsigned=True), "mysql", "mariadb")
    return base


@dataclass(frozen=True)
class NumberField(FieldSpec):
    minimum: float | None = None
    maximum: float | None = None

    type_name: ClassVar[str] = "number"

    def value_type(self) -> Any:
        return Annotated[
            float,
            Field(ge=self.minimum, le=self.maximum, strict=True, allow_inf_nan=False),
            AfterValidator(_signless_zero),
        ]

    def query_type(self) -> Any:
        return Annotated[
            float,
            Field(ge=self.minimum, le=self.maximum, allow_inf_nan=False),
            AfterValidator(_signless_zero),
        ]

    def sql_type(self) -> TypeEngine[Any]:
        from sqlalchemy import Double

        return Double()

    def range(self) -> tuple[float | int | None, float | int | None]:
        return self.minimum, self.maximum

    def parse_value(self, text: str) -> Any:
        # As JSON writes a number, and as MySQL's LOAD DATA reads the cell: Python's float()
        # would also take "1_000", " 5" or other scripts' digits, which LOAD DATA reads
        # otherwise (or not at all).
        if not _NUMBER_TEXT.fullmatch(text):
            raise ValueError(f"must be a number as JSON writes one, not {text[:30]!r}")
        value = _signless_zero(float(text))
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            raise ValueError(f"must be from {self.minimum} to {self.maximum}, not {value}")
        return value

    def to_text(self, value: Any) -> str:
        return "" if value is None else repr(float(value))

    def sample(self, rng: random.Random, span: int = 10_000) -> Any:
        low = self.minimum if self.minimum is not None else 0.0
        high = self.maximum if self.maximum is not None else low + 1000.0
        return round(rng.uniform(low, high), 2)


#: An exact decimal as text: digits, at most one point, no exponent.
_DECIMAL_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
#: The most digits an exact decimal keeps on every store (MySQL's DECIMAL: 65; DynamoDB's
#: numbers: 38).
DECIMAL_DIGITS = 38


@dataclass(frozen=True)
class DecimalField(FieldSpec):
    """An exact decimal (SQL's ``NUMERIC(precision, scale)``): ``precision`` digits in all,
    ``scale`` of them after the point. Carried in JSON as a string (``"0.99"``, always with
    ``scale`` digits after the point), so that no client, cache or driver ever holds it as a
    binary double; a client may also send a JSON integer. A value with more digits after
    the point than ``scale`` is refused, never rounded."""

    precision: int = 18
    scale: int = 2
    minimum: Decimal | None = None
    maximum: Decimal | None = None

    type_name: ClassVar[str] = "decimal"

    @cached_property
    def step(self) -> Decimal:
        return Decimal(1).scaleb(-self.scale)

    @cached_property
    def pattern(self) -> str:
        whole = self.precision - self.scale
        # Zeros past the scale are taken ("1.500" is 1.50); other digits there are not.
        fraction = f"(\\.[0-9]{{1,{self.scale}}}0*)?" if self.scale else ""
        return f"^-?[0-9]{{1,{max(whole, 1)}}}{fraction}$"

    def exact(self, value: object) -> Decimal:
        """``value`` (a string of digits, a JSON integer, a Decimal) as this field's decimal,
        with exactly ``scale`` digits after the point; ValueError saying why it is none."""
        if isinstance(value, bool | float):
            raise ValueError(
                'must be a decimal given as a string, e.g. "0.99" (a JSON number with a '
                "fraction is a binary double, which cannot hold most decimals exactly)"
            )
        if isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, str):
            if not _DECIMAL_TEXT.fullmatch(value):
                raise ValueError(f'must be a decimal such as "12.50", not {value[:30]!r}')
            number = Decimal(value)
        elif isinstance(value, Decimal):
            number = value
        else:
            raise ValueError('must be a decimal given as a string, e.g. "0.99"')
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -self.scale:
            normalized = number.normalize()
            exponent = normalized.as_tuple().exponent
            if isinstance(exponent, int) and exponent < -self.scale:
                raise ValueError(f"has more than {self.scale} digits after the point")
        try:
            kept = number.quantize(self.step) + 0  # + 0: -0.00 is 0.00
        except InvalidOperation:
            raise ValueError(f"must have at most {self.precision} digits") from None
        if len(kept.as_tuple().digits) > self.precision:
            raise ValueError(
                f"must have at most {self.precision - self.scale} digits before the point"
            )
        if (self.minimum is not None and kept < self.minimum) or (
            self.maximum is not None and kept > self.maximum
        ):
            raise ValueError(f"must be from {self.minimum} to {self.maximum}, not {kept}")
        return kept

    def stored(self, value: object) -> Decimal:
        """A value as a database or a change log hands it over (a Decimal, its text, or on
        SQLite a double), with this field's ``scale`` digits after the point."""
        text = repr(value) if isinstance(value, float) else str(value)
        return Decimal(text).quantize(self.step) + 0

    def value_type(self) -> Any:
        written: dict[str, Any] = {"type": "string", "format": "decimal", "pattern": self.pattern}
        if self.minimum is not None:
            written["x-minimum"] = str(self.minimum)
        if self.maximum is not None:
            written["x-maximum"] = str(self.maximum)
        return Annotated[
            Decimal,
            BeforeValidator(self.exact),
            PlainSerializer(str, return_type=str, when_used="json"),
            # Clients may also send a whole number as a JSON integer; answers are strings.
            WithJsonSchema({"anyOf": [written, {"type": "integer"}]}, mode="validation"),
            WithJsonSchema(written, mode="serialization"),
        ]

    def sql_type(self) -> TypeEngine[Any]:
        from sqlalchemy import Numeric

        return Numeric(self.precision, self.scale, asdecimal=True)

    def range(self) -> tuple[float | int | None, float | int | None]:
        return self.minimum, self.maximum  # type: ignore[return-value]

    def parse_value(self, text: str) -> Any:
        return self.exact(text)

    def sample(self, rng: random.Random, span: int = 10_000) -> Any:
        whole = min(self.precision - self.scale, 6)
        units = rng.randint(0, 10**whole * 10**self.scale - 1)
        return self.exact(Decimal(units).scaleb(-self.scale))


#: A UUID as RFC 9562 writes it: 32 hex digits in groups of 8-4-4-4-12 (any case).
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID = re.compile(UUID_PATTERN)


def canonical_uuid(value: object) -> str:
    """A UUID in its one canonical form (lower case, hyphenated): two spellings of one UUID
    must be one key, one lookup value, one cache entry."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str) or not _UUID.match(value):
        raise ValueError(
            "must be a UUID: 32 hex digits as 8-4-4-4-12, e.g. 0b8e9ad6-4d4b-4a43-9c4b-4c9e7f7d2a10"
        )
    return value.lower()


@dataclass(frozen=True)
class UuidField(FieldSpec):
    """A UUID, carried as its canonical text (``0b8e9ad6-…``, lower case); stored as
    PostgreSQL's ``UUID``, else as that text (``VARCHAR(36)``). It can be a key."""

    type_name: ClassVar[str] = "uuid"

    def value_type(self) -> Any:
        return Annotated[
            str,
            BeforeValidator(canonical_uuid),
            WithJsonSchema({"type": "string", "format": "uuid", "pattern": UUID_PATTERN}),
        ]

    def sql_type(self) -> TypeEngine[Any]:
        from sqlalchemy import String, Uuid

        return Uuid(as_uuid=False).with_variant(String(36), "mysql", "mariadb", "sqlite")

    def parse_value(self, text: str) -> Any:
        return canonical_uuid(text)

    def sample(self, rng: random.Random, span: int = 10_000) -> Any:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _json_document(value: object) -> object:
    """A JSON value every database stores as written: its text valid Unicode without NUL
    (PostgreSQL's jsonb refuses \\u0000), its numbers finite."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            storable(item)
        elif isinstance(item, dict):
            for name, member in item.items():
                storable(name)
                stack.append(member)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("must hold finite numbers only")
    return value


@dataclass(frozen=True)
class JsonField(FieldSpec):
    """A JSON document: any JSON value (an object, an array, a string, a number, a
    boolean; null only where nullable), stored in a JSON column (PostgreSQL's ``json``,
    which keeps the text as written; MySQL's ``JSON``; text on SQLite and DynamoDB). An
    object's members may come back in the database's order (MySQL sorts them): the same
    document. Never a key, a lookup or a filter."""

    type_name: ClassVar[str] = "json"

    @property
    def indexable(self) -> bool:
        return False

    def value_type(self) -> Any:
        return Annotated[
            Any,
            AfterValidator(self._present),
            AfterValidator(_json_document),
            WithJsonSchema({"description": "any JSON value"}),
        ]

    def _present(self, value: object) -> object:
        if value is None and not self.nullable:
            raise ValueError("must be a JSON value other than null (the field is not nullable)")
        return value

    def sql_type(self) -> TypeEngine[Any]:
        from sqlalchemy import JSON

        return JSON(none_as_null=True)

    def parse_value(self, text: str) -> Any:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ValueError("must be a JSON document") from None
        return _json_document(self._present(value))

    def to_text(self, value: Any) -> str:
        return "" if value is None else orjson.dumps(value).decode()

    def sample(self, rng: random.Random, span: int = 10_000) -> Any:
        return {"n": rng.randint(0, span), "tags": [rng.choice(_SYLLABLES) for _ in range(2)]}


def base64_text(value: bytes) -> str:
    """Bytes as JSON carries them: base64, RFC 4648's standard alphabet, padded."""
    return base64.b64encode(value).decode("ascii")


@dataclass(frozen=True)
class BinaryField(FieldSpec):
    """Bytes (SQL's ``BYTEA``, ``BLOB``, ``VARBINARY``), carried in JSON as base64 (RFC
    4648's standard alphabet, padded); at most ``max_length`` bytes. Never a key, a lookup
    or a filter."""

    max_length: int = 65_535

    type_name: ClassVar[str] = "binary"

    @property
    def indexable(self) -> bool:
        return False

    def decoded(self, value: object) -> bytes:
        if isinstance(value, bytes):
            data = value
        elif isinstance(value, str):
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(
                    "must be base64 (RFC 4648: A-Z, a-z, 0-9, + and /, padded with =)"
                ) from None
        else:
            raise ValueError("must be bytes given as a base64 string")
        if len(data) > self.max_length:
            raise ValueError(f"must be at most {self.max_length} bytes, not {len(data)}")
        return data

    def value_type(self) -> Any:
        return Annotated[
            bytes,
            BeforeValidator(self.decoded),
            PlainSerializer(base64_text, return_type=str, when_used="json"),
            WithJsonSchema(
                {
                    "type": "string",
                    "contentEncoding": "base64",
                    "maxLength": -(-self.max_length // 3) * 4,
                }
            ),
        ]

    def sql_type(self) -> TypeEngine[Any]:
        from sqlalchemy import LargeBinary

        return LargeBinary(self.max_length)

    def parse_value(self, text: str) -> Any:
        return self.decoded(text)

    def to_text(self, value: Any) -> str:
        return "" if value is None else base64_text(value)

    def sample(self, rng: random.Random, span: int = 10_000) -> Any:
        return rng.randbytes(min(self.max_length, 16))


@dataclass(frozen=True)
class BooleanField(FieldSpec):
    type_name: ClassVar[str] = "boolean"

    def value_type(self) -> Any:
        return Annotated[bool, Field(strict=True)]

    def query_type(self) -> Any:
        return bool

    def sql_type(self) -> TypeEngine[Any]:
        from sqlalchemy import Boolean

        return Boolean(create_constraint=False)

    def parse_value(self, text: str) -> Any:
        lowered = text.strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise ValueError(f"must be true or false, not {text[:30]!r}")

    def to_text(self, value: Any) -> str:
        return "" if value is None else ("true" if value else "false")

    def sample(self, rng: random.Random, span: int = 10_000) -> Any:
        return rng.random() < 0.5


@dataclass(frozen=True)
class TimestampField(FieldSpec):
    #: Fractional digits of a second kept (0 to 6): finer ones are cut before the value is
    #: stored or cached, so both hold the same instant (a column with fewer digits than the
    #: value would round it on its own).
    precision: int = 6

    type_name: ClassVar[str] = "timestamp"

    def value_type(self) -> Any:
        return Annotated[
            datetime,
            BeforeValidator(rfc3339),
            AfterValidator(self.cut),
            PlainSerializer(_rfc3339_text, return_type=str, when_used="json"),
            WithJsonSchema({"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN}),
        ]

    def cut(self, moment: datetime) -> datetime:
        """``moment`` with the fractional digits this field keeps."""
        return _cut(moment, self.precision)

    def sql_type(self) -> TypeEngine[Any]:
        from sqlalchemy import DateTime
        from sqlalchemy.dialects import mysql

        # UTC, with its zone where the database keeps one; the declared fractions of a second
        # (MySQL's DATETIME would keep none).
        digits = self.precision
        stored = DateTime(timezone=True)
        if digits != 6:
            from sqlalchemy.dialects import postgresql  # ~25 ms: only where it is needed

            stored = stored.with_variant(
                postgresql.TIMESTAMP(timezone=True, precision=digits), "postgresql"
            )
        return stored.with_variant(mysql.DATETIME(fsp=digits), "mysql", "mariadb")

    def parse_value(self, text: str) -> Any:
        return self.cut(rfc3339(text.strip()))

    def to_text(self, value: Any) -> str:
        return "" if value is None else _rfc3339_text(value)

    def sample(self, rng: random.Random, span: int = 10_000) -> Any:
        return datetime.fromtimestamp(rng.randint(1_600_000_000, 1_800_000_000), UTC)


def _rfc3339_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _cut(moment: datetime, precision: int) -> datetime:
    """``moment`` with ``precision`` fractional digits of a second."""
    step = 10 ** (6 - precision)
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % step)


#: A date-time without an offset, in the years every database stores (MySQL: 1000-9999).
LOCAL_DATETIME_PATTERN = (
    r"^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?$"
)
_LOCAL_DATETIME = re.compile(LOCAL_DATETIME_PATTERN)
#: A calendar date (RFC 3339's full-date), years 1000 to 9999.
DATE_PATTERN = r"^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}$"
_DATE = re.compile(DATE_PATTERN)


def local_datetime(value: object) -> datetime:
    """A date-time without an offset (``2026-11-24T17:58:12``), as a naive datetime: a
    wall-clock reading, which names no instant until someone says where."""
    moment = _date_time(
        value,
        _LOCAL_DATETIME,
        "a date and time without an offset, years 1000 to 9999",
        "2026-11-24T17:58:12 (this field keeps no time zone)",
    )
    if moment.tzinfo is not None:
        raise ValueError("must carry no offset: this field keeps no time zone")
    return moment


def calendar_date(value: object) -> date:
    """A date (``2026-11-24``), years 1000 to 9999."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATE.match(value):
        raise ValueError("must be a date, years 1000 to 9999, e.g. 2026-11-24")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a real date, e.g. 2026-11-24") from None


@dataclass(frozen=True)
class LocalDateTimeField(FieldSpec):
    """A date and time without a time zone (SQL's ``TIMESTAMP WITHOUT TIME ZONE``, MySQL's
    ``DATETIME``): kept, cached and answered as written, never moved to UTC, because it names
    no instant. Distinct from ``timestamp``, which is an instant and always carries its
    offset."""

    precision: int = 6

    type_name: ClassVar[str] = "local_datetime"

    def value_type(self) -> Any:
        return Annotated[
            datetime,
            BeforeValidator(local_datetime),
            AfterValidator(self.cut),
            PlainSerializer(datetime.isoformat, return_type=str, when_used="json"),
            WithJsonSchema(
                {"type": "string", "format": "local-date-time", "pattern": LOCAL_DATETIME_PATTERN}
            ),
        ]

    def cut(self, moment: datetime) -> datetime:
        return _cut(moment, self.precision)

    def sql_type(self) -> TypeEngine[Any]:
        from sqlalchemy import DateTime
        from sqlalchemy.dialects import mysql

        stored = DateTime(timezone=False)
        if self.precision != 6:
            from sqlalchemy.dialects import postgresql

            stored = stored.with_variant(
                postgresql.TIMESTAMP(timezone=False, precision=self.precision), "postgresql"
            )
        return stored.with_variant(mysql.DATETIME(fsp=self.precision), "mysql", "mariadb")

    def parse_value(self, text: str) -> Any:
        return self.cut(local_datetime(text.strip()))

    def to_text(self, value: Any) -> str:
        return "" if value is None else value.isoformat()

    def sample(self, rng: random.Random, span: int = 10_000) -> Any:
        return datetime.fromtimestamp(rng.randint(1_600_000_000, 1_800_000_000), UTC).replace(
            tzinfo=None
        )


@dataclass(frozen=True)
class DateField(FieldSpec):
    """A calendar date (SQL's ``DATE``), as ``2026-11-24`` in JSON."""

    type_name: ClassVar[str] = "date"

    def value_type(self) -> Any:
        return Annotated[
            date,
            BeforeValidator(calendar_date),
            PlainSerializer(date.isoformat, return_type=str, when_used="json"),
            WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN}),
        ]

    def sql_type(self) -> TypeEngine[Any]:
        from sqlalchemy import Date

        return Date()

    def parse_value(self, text: str) -> Any:
        return calendar_date(text.strip())

    def to_text(self, value: Any) -> str:
        return "" if value is None else value.isoformat()

    def sample(self, rng: random.Random, span: int = 10_000) -> Any:
        return date.fromordinal(
            rng.randint(date(2000, 1, 1).toordinal(), date(2030, 12, 31).toordinal())
        )


#: A time of day, to the second or finer; no offset (a time of day names no instant).
TIME_PATTERN = r"^[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?$"
_TIME = re.compile(TIME_PATTERN)


def time_of_day(value: object) -> time:
    """A time of day (``17:58:12``, ``17:58``, ``17:58:12.5``), without an offset."""
    if isinstance(value, time) and value.tzinfo is None:
        return value
    if not isinstance(value, str) or not _TIME.match(value):
        raise ValueError("must be a time of day without an offset, e.g. 17:58:12")
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a real time of day, 00:00:00 to 23:59:59.999999") from None


@dataclass(frozen=True)
class TimeField(FieldSpec):
    """A time of day (SQL's ``TIME``), as ``17:58:12`` in JSON: kept, cached and answered as
    written, to its ``precision``; a wall-clock reading with no date and no time zone."""

    precision: int = 6

    type_name: ClassVar[str] = "time"

    def value_type(self) -> Any:
        return Annotated[
            time,
            BeforeValidator(time_of_day),
            AfterValidator(self.cut),
            PlainSerializer(time.isoformat, return_type=str, when_used="json"),
            WithJsonSchema({"type": "string", "format": "local-time", "pattern": TIME_PATTERN}),
        ]

    def cut(self, moment: time) -> time:
        step = 10 ** (6 - self.precision)
        return moment.replace(microsecond=moment.microsecond - moment.microsecond % step)

    def sql_type(self) -> TypeEngine[Any]:
        from sqlalchemy import Time
        from sqlalchemy.dialects import mysql, postgresql

        return (
            Time()
            .with_variant(postgresql.TIME(precision=self.precision), "postgresql")
            .with_variant(mysql.TIME(fsp=self.precision), "mysql", "mariadb")
        )

    def parse_value(self, text: str) -> Any:
        return self.cut(time_of_day(text.strip()))

    def to_text(self, value: Any) -> str:
        return "" if value is None else value.isoformat()

    def sample(self, rng: random.Random, span: int = 10_000) -> Any:
        return time(rng.randrange(24), rng.randrange(60), rng.randrange(60))


FIELD_TYPES: dict[str, type[FieldSpec]] = {
    kind.type_name: kind
    for kind in (
        StringField,
        IntegerField,
        NumberField,
        DecimalField,
        BooleanField,
        TimestampField,
        LocalDateTimeField,
        DateField,
        TimeField,
        UuidField,
        JsonField,
        BinaryField,
    )
}

_SYLLABLES = (
    "al an ar bel cor da el fa gor ha is ja ka lo mi na or pa qui ra sa ta ul va wen".split()
)
