"""A resource: one declared table, compiled once into everything the tiers need from it.

From the declaration come the validated models (what a client may send for a new row, a
replacement and a merge patch, and what it gets back: also the OpenAPI schemas), the order
of a row's JSON, the key's type and its path parameter, and the ``Record`` every tier passes
around. Nothing else in twotier knows a resource's fields by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Any

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    TypeAdapter,
    ValidationError,
    create_model,
)

from twotier.resources.fields import MISSING, FieldSpec, IntegerField, StringField, base64_text

#: The name of the automatic id of a resource that declares neither ``key`` nor ``id``.
AUTO_KEY = "id"

#: What separates the parts of a key of several fields in its one text (a path segment,
#: a cursor, a cache key): ``/playlist_tracks/3,1027``. A part never holds it.
PART_SEPARATOR = ","

#: A row's key: the key field's value; for a key of several fields, their values' texts
#: joined by ``PART_SEPARATOR`` in the declared order (``key_of``, ``key_values``).
Key = int | str


def _json_default(value: object) -> str:
    """What orjson does not write itself: an exact decimal, as its digits in a string;
    bytes, as base64."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64_text(value)
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def to_json(values: Any) -> bytes:
    """Rows' values (or structures holding them) as JSON: date-times in RFC 3339 with Z,
    exact decimals as strings (``fields.DecimalField``)."""
    return orjson.dumps(values, option=orjson.OPT_UTC_Z, default=_json_default)


@dataclass(frozen=True)
class Relation:
    """One side of a reference: ``name`` in this resource's answers and paths, the other
    ``resource``, the referencing ``field`` (this resource's when ``to_one``, else the other
    resource's)."""

    name: str
    resource: str
    field: str
    to_one: bool


@dataclass(frozen=True, slots=True)
class Record:
    """A row as the tiers pass it: its key, its client-facing fields (in JSON order, the
    key among them) and its version (never part of the JSON; the ETag)."""

    key: Key
    values: dict[str, Any]
    version: int

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def to_json(self) -> bytes:
        return to_json(self.values)

    def replaced(self, changes: dict[str, Any]) -> Record:
        """This row after an update that sets ``changes`` and bumps the version."""
        return Record(self.key, self.values | changes, self.version + 1)


@dataclass(frozen=True)
class Resource:
    """A declared resource (see ``declaration``), with what derives from it."""

    name: str
    singular: str
    table: str
    #: The key field's name; for a key of several fields, their names joined by
    #: ``PART_SEPARATOR`` (a name for messages, never a column: see ``key_fields``).
    key: str
    auto_key: bool
    fields: tuple[FieldSpec, ...]
    lookups: tuple[str, ...] = ()
    #: Fields besides the key and the lookups that clients may filter lists on (indexed).
    filters: tuple[str, ...] = ()
    #: Clients may filter on every field, scanning the table where no index serves.
    unindexed_filters: bool = False
    #: Fields lists may compare (gt, gte, lt, lte) and, unless nullable, order by.
    ranges: tuple[str, ...] = ()
    #: Fields lists may ask for one of several values of (in).
    sets: tuple[str, ...] = ()
    #: Text fields lists may ask for a prefix of (prefix), and order by.
    prefixes: tuple[str, ...] = ()
    #: Generated rows ``db sample`` puts into the table while it is empty (0: none, ever,
    #: unless asked for by name): a user's own table is never filled unasked.
    samples: int = 0
    key_max: int = 2**53 - 1  # for an automatic key
    #: Its relations to other resources, both ways (``relations.linked``).
    relations: tuple[Relation, ...] = ()
    _by_name: dict[str, FieldSpec] = field(
        default_factory=dict, compare=False, repr=False, hash=False
    )

    def __post_init__(self) -> None:
        self._by_name.update({spec.name: spec for spec in self.fields})

    # -- the key --------------------------------------------------------------------------

    @cached_property
    def key_fields(self) -> tuple[str, ...]:
        """The fields the key is made of, in the declared order: one but for a composite
        key (a join table's two foreign keys)."""
        return tuple(self.key.split(PART_SEPARATOR))

    @cached_property
    def composite(self) -> bool:
        return len(self.key_fields) > 1

    @cached_property
    def key_field(self) -> FieldSpec:
        """The key's field; for a composite key, a string of its parts' texts, which
        ``key_text`` checks part by part."""
        if self.auto_key:
            return IntegerField(self.key, minimum=1, maximum=self.key_max)
        if self.composite:
            part = "[^,/\\x00]+"
            return StringField(
                self.key,
                max_length=sum(self._max_text(name) + 1 for name in self.key_fields),
                pattern=f"^{part}(?:,{part}){{{len(self.key_fields) - 1}}}$",
            )
        return self._by_name[self.key]

    def _max_text(self, name: str) -> int:
        spec = self._by_name[name]
        return spec.max_length if isinstance(spec, StringField) else 40

    def key_of(self, values: Mapping[str, Any]) -> Key:
        """The key of a row's ``values``."""
        if not self.composite:
            key: Key = values[self.key]
            return key
        return PART_SEPARATOR.join(str(values[name]) for name in self.key_fields)

    def key_values(self, key: Key) -> dict[str, Any]:
        """The values of the key's fields (``key`` valid: from ``parse_key`` or a row)."""
        if not self.composite:
            return {self.key: key}
        parts = str(key).split(PART_SEPARATOR)
        return {
            name: int(part) if isinstance(self._by_name[name], IntegerField) else part
            for name, part in zip(self.key_fields, parts, strict=True)
        }

    @cached_property
    def columns(self) -> tuple[str, ...]:
        """Every client-facing field, in the order of a row's JSON: the automatic id first,
        then the declared fields as declared (a declared key where it was declared)."""
        names = tuple(spec.name for spec in self.fields)
        return (self.key, *names) if self.auto_key else names

    @cached_property
    def writable(self) -> tuple[FieldSpec, ...]:
        """The fields a client writes: all declared ones (a client key among them)."""
        return self.fields

    @cached_property
    def changeable(self) -> tuple[FieldSpec, ...]:
        """The fields an update may change: all but the key's."""
        return tuple(spec for spec in self.fields if spec.name not in self.key_fields)

    @cached_property
    def indexed(self) -> tuple[str, ...]:
        """The fields twotier indexes besides the key: the lookups, the filters, and the
        fields lists may query (each once)."""
        return tuple(dict.fromkeys((*self.lookups, *self.filters, *self.queried)))

    @cached_property
    def queried(self) -> tuple[str, ...]:
        """The fields declared for ranges, sets or prefixes, in row order."""
        declared = {*self.ranges, *self.sets, *self.prefixes}
        return tuple(name for name in self.columns if name in declared)

    @cached_property
    def operators(self) -> dict[str, tuple[str, ...]]:
        """The operators a list takes on each field that takes one (``store.base.OPERATORS``):
        comparisons and sets on the key (a composite key's excepted) and the declared
        fields, prefixes on the declared ones, null tests on the nullable ones of them."""
        taken: dict[str, tuple[str, ...]] = {}
        for name in self.columns:
            ops: list[str] = []
            own_key = name == self.key and not self.composite
            if own_key or name in self.ranges:
                ops += ["gt", "gte", "lt", "lte"]
            if own_key or name in self.sets:
                ops.append("in")
            if name in self.prefixes:
                ops.append("prefix")
            if ops and self.field(name).nullable:
                ops.append("null")
            if ops:
                taken[name] = tuple(ops)
        return taken

    @cached_property
    def orderable(self) -> tuple[str, ...]:
        """The fields a list may be ordered by: the key (not a composite one), and the
        declared ranges and prefixes that are never null (a keyset page needs a value)."""
        return tuple(
            name
            for name in self.columns
            if (name == self.key and not self.composite)
            or (name in (*self.ranges, *self.prefixes) and not self.field(name).nullable)
        )

    @cached_property
    def filterable(self) -> tuple[str, ...]:
        """The fields a list may filter on, in row order: those an index serves (the key,
        the lookups, the declared filters), or every one where ``unindexed_filters``."""
        # A composite key's index leads with its first field.
        served = {self.key, self.key_fields[0], *self.indexed}
        return tuple(name for name in self.columns if self.unindexed_filters or name in served)

    def relation(self, name: str) -> Relation | None:
        return next((relation for relation in self.relations if relation.name == name), None)

    def field(self, name: str) -> FieldSpec:
        return self.key_field if name == self.key else self._by_name[name]

    def record(self, values: dict[str, Any], version: int) -> Record:
        return Record(self.key_of(values), values, version)

    @property
    def path_parameter(self) -> str:
        """The key's name in paths and OpenAPI: ``hero_id``, ``product_sku``; a key already
        named for its row as it is (``album_id``, ``AlbumId``, not ``album_album_id``); a
        composite key's, ``playlist_track_key``."""
        if self.composite:
            return f"{self.singular}_key"
        if self.key.lower().replace("_", "").startswith(self.singular.replace("_", "")):
            return self.key
        return f"{self.singular}_{self.key}"

    @property
    def title(self) -> str:
        """The schemas' stem: ``Hero`` (HeroIn, HeroPatch, HeroPage)."""
        return "".join(part.capitalize() for part in self.singular.split("_"))

    @cached_property
    def _key_bounds(self) -> tuple[int, int] | None:
        key = self.key_field
        return key.bounds if isinstance(key, IntegerField) else None

    @cached_property
    def key_text(self) -> TypeAdapter[Any]:
        """The one validator of a key given as text (a path segment, a query parameter, a
        CSV cell): the key field's own rules, its pattern matched in linear time; a
        composite key's parts each by its field's (the key's text made canonical: ``03``
        is ``3``)."""
        return TypeAdapter(self.key_type)

    @cached_property
    def key_type(self) -> Any:
        """The annotation ``key_text`` checks with."""
        if self.composite:
            return Annotated[str, AfterValidator(self._canonical_key)]
        return self.key_field.query_type()

    @cached_property
    def _part_texts(self) -> tuple[tuple[str, TypeAdapter[Any]], ...]:
        return tuple(
            (name, TypeAdapter(self._by_name[name].query_type())) for name in self.key_fields
        )

    def _canonical_key(self, text: str) -> str:
        parts = text.split(PART_SEPARATOR)
        if len(parts) != len(self.key_fields):
            raise ValueError(
                f"must be {len(self.key_fields)} values separated by "
                f"{PART_SEPARATOR!r}: {', '.join(self.key_fields)}"
            )
        values = []
        for (name, adapter), part in zip(self._part_texts, parts, strict=True):
            try:
                values.append(str(adapter.validate_python(part)))
            except ValidationError as invalid:
                raise ValueError(f"{name}: {_message(invalid)}") from None
        return PART_SEPARATOR.join(values)

    def parse_key(self, text: str) -> Key | None:
        """The key a path segment names, if it is a valid one; None if not (the caller
        says why: ``key_text`` names the rule broken)."""
        bounds = self._key_bounds
        # Digits alone, the common case, without a validator's call; anything else ("+5",
        # "5.0") is the validator's to judge.
        if bounds is not None and text.isascii() and text.isdigit() and len(text) <= 19:
            value = int(text)
            return value if bounds[0] <= value <= bounds[1] else None
        try:
            key: Key = self.key_text.validate_python(text)
        except ValidationError:
            return None
        return key

    # -- the models a client's JSON is checked against (and the OpenAPI schemas) -----------

    @cached_property
    def create_model(self) -> type[BaseModel]:
        """A whole row as a client sends it (POST, PUT)."""
        return create_model(  # type: ignore[call-overload,no-any-return]
            f"{self.title}In",
            __config__=_STRICT,
            __doc__=f"A whole {self.singular} as a client sends it (POST, PUT).",
            **{spec.name: (spec.annotation(), _default(spec)) for spec in self.writable},
        )

    def given(self, row: BaseModel, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
        """A whole row's values as a client gave them (``create_model``, ``replace_model``):
        a field the database fills, left out, stays out (the database's default, or on a
        replaced row, its value as it is)."""
        values = row.model_dump(exclude=set(exclude) or None)
        for name in self.filled_by_database:
            if name not in row.model_fields_set:
                values.pop(name, None)
        return values

    @cached_property
    def filled_by_database(self) -> tuple[str, ...]:
        """The fields a new row may leave to the database (``database_default``)."""
        return tuple(spec.name for spec in self.fields if spec.database_default)

    @cached_property
    def replace_model(self) -> type[BaseModel]:
        """A whole row as ``PUT`` sends it: the row as ``GET`` answers it, the key optional
        (the path names it: one given must be the same; ``other_key_fields``)."""
        return create_model(  # type: ignore[call-overload,no-any-return]
            f"{self.title}Replace",
            __config__=_STRICT,
            __doc__=f"A whole {self.singular} as PUT sends it (as GET answers it): every "
            f"field; the {self.key} may be left out, as the path names it, and if given must "
            "be the same.",
            **self._optional_key(),
            **{spec.name: (spec.annotation(), _default(spec)) for spec in self.changeable},
        )

    @cached_property
    def patch_model(self) -> type[BaseModel]:
        """Some fields, as a JSON merge patch: absent fields are left as they are; null sets
        a nullable field to null and changes nothing else; an empty patch is a no-op."""
        return create_model(  # type: ignore[call-overload,no-any-return]
            f"{self.title}Patch",
            __config__=_STRICT,
            __doc__=f"Some fields of a {self.singular} (PATCH, as a JSON merge patch): absent "
            "fields are left as they are; a null changes a nullable field to null, and "
            f"nothing else; an empty patch is a no-op. The {self.key} cannot change: if "
            "given, it must be the path's.",
            **self._optional_key(),
            **{spec.name: (spec.value_type() | None, None) for spec in self.changeable},
        )

    def _optional_key(self) -> dict[str, Any]:
        if self.composite:
            return {
                name: (self._by_name[name].value_type() | None, None) for name in self.key_fields
            }
        return {self.key: (self.key_field.value_type() | None, None)}

    def other_key_fields(self, body: BaseModel, key: Key) -> dict[str, tuple[Any, Any]]:
        """The key's fields a PUT or PATCH body gives other values than the path's ``key``
        (name: (given, the path's)): a row's key cannot change."""
        named = self.key_values(key)
        return {
            name: (given, named[name])
            for name in self.key_fields
            if (given := getattr(body, name, None)) is not None and given != named[name]
        }

    @cached_property
    def out_model(self) -> type[BaseModel]:
        """A stored row as the API returns it."""
        fields: dict[str, Any] = {}
        if self.auto_key:
            fields[self.key] = (self.key_field.value_type(), ...)
        for spec in self.fields:
            fields[spec.name] = (spec.annotation(), ...)
        return create_model(
            self.title,
            __doc__=f"A stored {self.singular} as the API returns it.",
            **fields,
        )

    @cached_property
    def listed_model(self) -> type[BaseModel]:
        """A row of a page, as documented: the fields it asks for (``fields=``), every one
        by default; so none is required."""
        listed: type[BaseModel] = type(
            f"{self.title}Listed",
            (self.out_model,),
            {
                "__doc__": f"A {self.singular} in a page: the fields asked for, every one by "
                "default.",
                "model_config": ConfigDict(json_schema_extra=_none_required),
            },
        )
        return listed

    @cached_property
    def page_model(self) -> type[BaseModel]:
        return create_model(
            f"{self.title}Page",
            __doc__=f"One page of ``GET /{self.name}``; pass ``next_after`` as ``after`` to "
            "get the next page: the last row's key, or in another order a cursor.",
            items=(list[self.listed_model], ...),  # type: ignore[name-defined]
            next_after=(self.key_field.value_type() | str | None, ...),
        )

    def changes_of(self, patch: BaseModel) -> dict[str, Any]:
        """What a merge patch sets: the fields the client gave, a null only where the field
        is nullable (elsewhere a null changes nothing)."""
        given = patch.model_dump(exclude_unset=True)
        return {
            name: value
            for name, value in given.items()
            if name not in self.key_fields and (value is not None or self._by_name[name].nullable)
        }


_STRICT = ConfigDict(extra="forbid", frozen=True)


def _none_required(schema: dict[str, Any]) -> None:
    schema.pop("required", None)


def _default(spec: FieldSpec) -> Any:
    if spec.default is not MISSING:
        return spec.default
    # Left out, a field the database fills is dropped before the write (``given``).
    return None if spec.nullable or spec.database_default else ...


def _message(invalid: ValidationError) -> str:
    """A validator's first complaint, without pydantic's prefix."""
    return str(invalid.errors()[0]["msg"]).removeprefix("Value error, ")
