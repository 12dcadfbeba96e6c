"""One resource's rows as DynamoDB items, and back: the attribute each field becomes.

An item holds each field under its own name (strings ``S``, whole and real numbers ``N``,
booleans ``BOOL``, date-times ``S`` as fixed-width RFC 3339 text in UTC, so that text order
is time order; a null is an absent attribute), the row version under ``version``, and for
each lookup field an index attribute ``_by_<field>``: ``=`` and the value's text. The index
attribute, not the field, keys the field's global secondary index, because an index key
cannot be an empty string (``=`` makes every value non-empty) and must have one type.

A key of two fields is the table's partition key and sort key; the item also holds the key's
text (``_twotier_key``), which sorts a lookup index's rows (an index has one sort key).

What DynamoDB cannot store is refused before the call (``StoreRefused``, a 400): a number
beyond its range (magnitudes from 1e-130 to below 1e126), an empty string as a key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import orjson

from twotier.errors import StoreRefused
from twotier.resources import Key, Record, Resource
from twotier.resources.fields import (
    BinaryField,
    BooleanField,
    DateField,
    DecimalField,
    FieldSpec,
    IntegerField,
    JsonField,
    LocalDateTimeField,
    NumberField,
    TimeField,
    TimestampField,
)

VERSION = "version"
INDEX_PREFIX = "_by_"
#: A composite key's text, the sort key of its lookups' indexes.
KEY_TEXT = "_twotier_key"

#: DynamoDB's numbers: 38 significant digits, magnitudes from 1e-130 up to below 1e126.
_LARGEST = Decimal("9.9999999999999999999999999999999999999E+125")
_SMALLEST = Decimal("1E-130")

Attribute = dict[str, Any]


def index_name(field: str) -> str:
    """The global secondary index of a lookup field."""
    return f"by_{field}"


def index_attribute(field: str) -> str:
    return INDEX_PREFIX + field


def key_attributes(resource: Resource) -> dict[str, str]:
    """The item key's attributes and their types (``N`` for whole numbers, ``S`` for
    text): the key field, or a composite key's two, partition key first."""
    if not resource.composite:
        return {resource.key: "N" if isinstance(resource.key_field, IntegerField) else "S"}
    return {
        name: "N" if isinstance(resource.field(name), IntegerField) else "S"
        for name in resource.key_fields
    }


def index_sort_key(resource: Resource) -> str:
    """The attribute a lookup index sorts its rows by: the key's (its text, composite)."""
    return KEY_TEXT if resource.composite else resource.key


def _number(name: str, value: float | int) -> Attribute:
    text = str(value) if isinstance(value, int) else repr(float(value))
    magnitude = abs(Decimal(text))
    if magnitude and not _SMALLEST <= magnitude <= _LARGEST:
        raise StoreRefused(
            f"{name} = {text} is beyond what DynamoDB stores (magnitudes from 1e-130 to 1e125)"
        )
    return {"N": text}


def _timestamp_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _whole(text: str) -> int:
    return int(text) if text.lstrip("-").isdigit() else int(Decimal(text))


def _encoder(spec: FieldSpec) -> Callable[[Any], Attribute]:
    if isinstance(spec, BooleanField):
        return lambda value: {"BOOL": bool(value)}
    if isinstance(spec, IntegerField | NumberField):
        name = spec.name
        return lambda value: _number(name, value)
    if isinstance(spec, DecimalField):
        return lambda value: {"N": str(value)}  # exact: DynamoDB keeps 38 digits
    if isinstance(spec, TimestampField):
        return lambda value: {"S": _timestamp_text(value)}
    if isinstance(spec, LocalDateTimeField | DateField | TimeField):
        return lambda value: {"S": value.isoformat()}  # ISO 8601 text sorts as time does
    if isinstance(spec, JsonField):
        return lambda value: {"S": orjson.dumps(value).decode()}
    if isinstance(spec, BinaryField):
        return lambda value: {"B": value}
    return lambda value: {"S": value}


def _decoder(spec: FieldSpec) -> Callable[[Attribute], Any]:
    if isinstance(spec, BooleanField):
        return lambda attribute: attribute["BOOL"]
    if isinstance(spec, IntegerField):
        return lambda attribute: _whole(attribute["N"])
    if isinstance(spec, NumberField):
        return lambda attribute: float(attribute["N"])
    if isinstance(spec, DecimalField):
        return lambda attribute: spec.stored(attribute["N"])
    if isinstance(spec, TimestampField):
        return lambda attribute: datetime.fromisoformat(attribute["S"]).astimezone(UTC)
    if isinstance(spec, LocalDateTimeField):
        return lambda attribute: datetime.fromisoformat(attribute["S"])
    if isinstance(spec, DateField):
        return lambda attribute: date.fromisoformat(attribute["S"])
    if isinstance(spec, TimeField):
        return lambda attribute: time.fromisoformat(attribute["S"])
    if isinstance(spec, JsonField):
        return lambda attribute: orjson.loads(attribute["S"])
    if isinstance(spec, BinaryField):
        return lambda attribute: bytes(attribute["B"])
    return lambda attribute: attribute["S"]


class ItemCodec:
    """Records of one resource to items and back (see the module's docstring)."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.key_types = key_attributes(resource)
        self.key_names = tuple(self.key_types)
        self._composite = resource.composite
        fields = [resource.field(name) for name in resource.columns]
        self._encoders = {spec.name: _encoder(spec) for spec in fields}
        self._decoders = tuple((spec.name, _decoder(spec)) for spec in fields)
        self._lookups = resource.lookups
        self._texts = {name: resource.field(name).to_text for name in resource.lookups}

    def key(self, key: Key) -> dict[str, Attribute]:
        """The item key of a row."""
        values = self.resource.key_values(key) if self._composite else {self.key_names[0]: key}
        item: dict[str, Attribute] = {}
        for name, kind in self.key_types.items():
            value = values[name]
            if kind == "S" and value == "":
                raise StoreRefused(f"DynamoDB keeps no empty {name}")
            item[name] = {kind: value if kind == "S" else str(value)}
        return item

    def value(self, field: str, value: Any) -> Attribute:
        """One field's value as an attribute (never None: a null is no attribute)."""
        return self._encoders[field](value)

    def index_value(self, field: str, value: Any) -> Attribute:
        """A lookup field's value as its index key."""
        return {"S": "=" + self._texts[field](value)}

    def item(self, values: Mapping[str, Any], version: int) -> dict[str, Attribute]:
        """A whole row's item (``values`` by field name, the key among them)."""
        key = self.resource.key_of(values)
        item = self.key(key)
        if self._composite:
            item[KEY_TEXT] = {"S": str(key)}
        item |= self.attributes(values)
        item[VERSION] = {"N": str(version)}
        return item

    def attributes(self, values: Mapping[str, Any]) -> dict[str, Attribute]:
        """The attributes ``values`` set (not the key, nor the nulls), with the index
        attributes of the lookup fields among them."""
        attributes: dict[str, Attribute] = {}
        for name, value in values.items():
            if value is None:
                continue
            if name not in self.key_names:  # the key's own are the item key's
                attributes[name] = self._encoders[name](value)
            if name in self._lookups:  # a composite key's field among them
                attributes[index_attribute(name)] = self.index_value(name, value)
        return attributes

    def removed(self, values: Mapping[str, Any]) -> list[str]:
        """The attributes that nulls in ``values`` remove (a lookup's index one too)."""
        gone: list[str] = []
        for name, value in values.items():
            if value is None and name not in self.key_names:
                gone.append(name)
                if name in self._lookups:
                    gone.append(index_attribute(name))
        return gone

    def record(self, item: Mapping[str, Attribute]) -> Record:
        values = {
            name: decode(item[name]) if name in item else None for name, decode in self._decoders
        }
        # An item another writer made without twotier's version reads as version 0, below
        # any twotier gives (the change-log follower then gives it one).
        version = _whole(item[VERSION]["N"]) if VERSION in item else 0
        return Record(self.key_of(item), values, version)

    def records(self, items: Iterable[Mapping[str, Attribute]]) -> list[Record]:
        return [self.record(item) for item in items]

    def key_of(self, item: Mapping[str, Attribute]) -> Key:
        values = {
            name: _whole(item[name]["N"]) if kind == "N" else item[name]["S"]
            for name, kind in self.key_types.items()
        }
        return self.resource.key_of(values)
