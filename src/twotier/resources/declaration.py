"""Reading resource declarations: a TOML file (``TWOTIER_RESOURCES``) into checked resources.

Every mistake stops start-up with one line that names the file, the resource and the field,
never a traceback: ``ResourceError`` carries that line.

.. code-block:: toml

    [resources.products]          # served at /products
    table = "products"
    key = "sku"                   # a client-given key; without it, an automatic integer `id`
    lookups = ["category"]        # each value's rows cached as one entry

    [resources.products.fields]
    sku      = { type = "string", max_length = 32 }
    price    = { type = "number", minimum = 0 }
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from importlib import resources as package_files
from pathlib import Path
from typing import Annotated, Any

from twotier.errors import ResourceError
from twotier.resources.fields import (
    DECIMAL_DIGITS,
    FIELD_TYPES,
    INT64,
    MISSING,
    SAFE_INTEGERS,
    BinaryField,
    BooleanField,
    DateField,
    DecimalField,
    FieldSpec,
    IntegerField,
    JsonField,
    LocalDateTimeField,
    NumberField,
    StringField,
    TimeField,
    TimestampField,
    UuidField,
)
from twotier.resources.relations import linked, references
from twotier.resources.reserved_words import RESERVED_WORDS
from twotier.resources.resource import AUTO_KEY, PART_SEPARATOR, Resource

#: The declaration twotier serves when TWOTIER_RESOURCES is not set: the seed's superheroes.
BUILTIN = "heroes.toml"

# A resource's name is its path: lower-case letters, digits and underscores, starting with a
# letter, the same in a URL, a schema name and a cache key.
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
# Tables and fields may be named as the database has them, mixed case included (``Album``,
# ``AlbumId``): letters, digits and underscores, starting with a letter. They are always
# quoted in SQL; a field's name is also its name in JSON.
_SQL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")
#: Names twotier uses itself: a row's version column, the list parameters, its routes.
_OWN_COLUMNS = frozenset({"version", "after", "limit"})
_OWN_PATHS = frozenset({"batch", "admin", "healthz", "readyz", "metrics", "docs", "redoc"})

_RESOURCE_KEYS = frozenset(
    {
        "table",
        "key",
        "id",
        "lookups",
        "relations",
        "filters",
        "unindexed_filters",
        "ranges",
        "sets",
        "prefixes",
        "samples",
        "fields",
        "singular",
    }
)
_FIELD_KEYS = {
    "string": {
        "type",
        "max_length",
        "pattern",
        "values",
        "fixed",
        "enum",
        "nullable",
        "default",
    },
    "integer": {"type", "minimum", "maximum", "nullable", "default"},
    "number": {"type", "minimum", "maximum", "nullable", "default"},
    "decimal": {"type", "precision", "scale", "minimum", "maximum", "nullable", "default"},
    "boolean": {"type", "nullable", "default"},
    "timestamp": {"type", "precision", "nullable", "default"},
    "local_datetime": {"type", "precision", "nullable", "default"},
    "date": {"type", "nullable", "default"},
    "time": {"type", "precision", "nullable", "default"},
    "uuid": {"type", "nullable", "default"},
    "json": {"type", "nullable", "default"},
    "binary": {"type", "max_length", "nullable", "default"},
}


#: What a string key may hold when its declaration says no more: not a slash (a key names a
#: row in a path), not empty, no NUL.
KEY_PATTERN = "^[^/\\x00]+$"
#: A string part of a composite key's: a comma separates the parts.
PART_PATTERN = "^[^,/\\x00]+$"


def builtin_text() -> str:
    return package_files.files("twotier.resources").joinpath(BUILTIN).read_text("utf-8")


def default_resource(resources: Sequence[Resource]) -> str:
    """The resource the seed's batch protocol addresses when an event names none: the
    heroes when declared, else the first one declared."""
    names = [resource.name for resource in resources]
    return "heroes" if "heroes" in names else names[0]


def load_resources(path: str | Path | None) -> tuple[Resource, ...]:
    """The resources a file declares (the built-in heroes when ``path`` is None)."""
    if path is None:
        return parse_resources(builtin_text(), f"(built in) {BUILTIN}")
    where = str(path)
    try:
        text = Path(path).read_text("utf-8")
    except OSError as error:
        raise ResourceError(f"{where}: cannot read it: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ResourceError(f"{where}: is not UTF-8 text") from None
    return parse_resources(text, where)


def parse_resources(text: str, where: str) -> tuple[Resource, ...]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ResourceError(f"{where}: not valid TOML: {error}") from None
    unknown = set(document) - {"resources"}
    if unknown:
        raise ResourceError(
            f"{where}: unknown top-level key {sorted(unknown)[0]!r}; use [resources.NAME]"
        )
    declared = document.get("resources")
    if not isinstance(declared, dict) or not declared:
        raise ResourceError(f"{where}: declares no resource; add a [resources.NAME] table")
    resources = tuple(_resource(where, name, spec) for name, spec in declared.items())
    refs = {
        name: references(
            f"{where}: resources.{name}", spec["relations"], {f.name: f for f in resource.fields}
        )
        for resource, (name, spec) in zip(resources, declared.items(), strict=True)
        if "relations" in spec
    }
    resources = linked(resources, refs, where)
    tables = {resource.name: resource.table for resource in resources}
    clash = _case_clash(tables)
    if clash:
        other, name = clash
        raise ResourceError(
            f"{where}: resources.{name}: table {tables[name]!r} is already served by "
            f"resources.{other}"
        )
    return resources


def _case_clash(names: dict[str, str]) -> tuple[str, str] | None:
    """The first two owners whose names differ only in case, in declaration order."""
    seen: dict[str, str] = {}
    for owner, name in names.items():
        other = seen.setdefault(name.lower(), owner)
        if other != owner:
            return other, owner
    return None


def _resource(where: str, name: str, spec: object) -> Resource:
    at = f"{where}: resources.{name}"
    _check_name(at, name, "a resource name (its path)", sql=False)
    if name in _OWN_PATHS:
        raise ResourceError(f"{at}: /{name} is one of twotier's own paths; choose another name")
    if not isinstance(spec, dict):
        raise ResourceError(f"{at}: must be a table ([resources.{name}])")
    unknown = set(spec) - _RESOURCE_KEYS
    if unknown:
        raise ResourceError(
            f"{at}: unknown setting {sorted(unknown)[0]!r} (settings: "
            f"{', '.join(sorted(_RESOURCE_KEYS))})"
        )
    table = _text(at, spec, "table", name)
    _check_name(at + ".table", table, "a table name", _SQL_NAME)
    singular = _text(at, spec, "singular", _singular(name))
    _check_name(at + ".singular", singular, "a singular name", sql=False)
    fields_spec = spec.get("fields")
    if not isinstance(fields_spec, dict) or not fields_spec:
        raise ResourceError(f"{at}: declares no fields; add [resources.{name}.fields]")
    fields = tuple(_field(f"{at}.fields.{f}", f, s) for f, s in fields_spec.items())
    names = {field.name for field in fields}
    clash = _case_clash({field.name: field.name for field in fields})
    if clash:
        # SQLite and MySQL take column names in any case: one column for both.
        other, name = clash
        raise ResourceError(
            f"{at}.fields.{name}: {other!r} and {name!r} differ only in case, "
            "and name one column where the database ignores case; keep one"
        )
    folded = {name.lower(): name for name in names}
    if "key" in spec and "id" in spec:
        raise ResourceError(
            f"{at}.id: an automatic id (`id`) and a client-given key (`key`) exclude each "
            "other; declare one"
        )
    auto = "key" not in spec
    key_max = SAFE_INTEGERS[1]
    if auto:
        key, key_max = _auto_key(at, spec.get("id"))
        if key.lower() in folded:
            raise ResourceError(
                f"{at}.fields.{folded[key.lower()]}: `{key}` is the automatic id; leave it out "
                f'of the fields, or declare key = "{key}" to give it yourself'
            )
    else:
        key_fields = _key_fields(at, spec["key"], names)
        key = PART_SEPARATOR.join(key_fields)
        fields = tuple(
            _key_part(at, field, composite=len(key_fields) > 1) if field.name in key_fields
            else field
            for field in fields
        )  # fmt: skip
    lookups = spec.get("lookups", [])
    if not isinstance(lookups, list) or not all(isinstance(item, str) for item in lookups):
        raise ResourceError(f"{at}.lookups: must be a list of field names")
    for lookup in lookups:
        if lookup not in names:
            raise ResourceError(f"{at}.lookups: {lookup!r} is not one of its fields")
        if lookup == key:
            raise ResourceError(f"{at}.lookups: {lookup!r} is the key; a key is read directly")
        # A part of a composite key may be one: the tracks of a playlist.
        field = next(item for item in fields if item.name == lookup)
        if not field.indexable:
            raise ResourceError(f"{at}.fields.{lookup}: a lookup's max_length is at most 16383")
    if len(set(lookups)) != len(lookups):
        raise ResourceError(f"{at}.lookups: names a field twice")
    filters = spec.get("filters", [])
    if not isinstance(filters, list) or not all(isinstance(item, str) for item in filters):
        raise ResourceError(f"{at}.filters: must be a list of field names")
    for filtered in filters:
        if filtered not in names:
            raise ResourceError(f"{at}.filters: {filtered!r} is not one of its fields")
        leads = filtered in (key, key.split(PART_SEPARATOR)[0])  # the key's index leads
        if leads or filtered in lookups:
            what = "the key's first field" if leads else "a lookup"
            raise ResourceError(
                f"{at}.filters: {filtered!r} is {what}, which can be filtered on already"
            )
        field = next(item for item in fields if item.name == filtered)
        if not field.indexable:
            raise ResourceError(f"{at}.fields.{filtered}: a filter's max_length is at most 16383")
    if len(set(filters)) != len(filters):
        raise ResourceError(f"{at}.filters: names a field twice")
    unindexed = spec.get("unindexed_filters", False)
    if not isinstance(unindexed, bool):
        raise ResourceError(f"{at}.unindexed_filters: must be true or false")
    queried = {
        kind: _queried(at, spec, kind, fields, names) for kind in ("ranges", "sets", "prefixes")
    }
    samples = spec.get("samples", 0)
    if not _is_int(samples) or not 0 <= samples <= 10_000_000:
        raise ResourceError(f"{at}.samples: must be a whole number from 0 to 10000000")
    return Resource(
        name=name,
        singular=singular,
        table=table,
        key=key,
        auto_key=auto,
        key_max=key_max,
        fields=fields,
        lookups=tuple(lookups),
        filters=tuple(filters),
        unindexed_filters=unindexed,
        ranges=queried["ranges"],
        sets=queried["sets"],
        prefixes=queried["prefixes"],
        samples=samples,
    )


#: The field types each kind of query takes: comparisons and orders on those with an order
#: (text in byte order), membership on those compared exactly, prefixes on text.
_QUERIED_TYPES = {
    "ranges": frozenset(
        {"integer", "number", "decimal", "string", "date", "time", "timestamp", "local_datetime"}
    ),
    "sets": frozenset(
        {"integer", "decimal", "string", "uuid", "date", "time", "timestamp", "local_datetime"}
    ),
    "prefixes": frozenset({"string"}),
}


def _queried(
    at: str, spec: Mapping[str, Any], kind: str, fields: Sequence[FieldSpec], names: set[str]
) -> tuple[str, ...]:
    """The fields a resource declares for one kind of query (``ranges``, ``sets``,
    ``prefixes``): each indexed with the key by ``db init``."""
    listed = spec.get(kind, [])
    if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
        raise ResourceError(f"{at}.{kind}: must be a list of field names")
    if len(set(listed)) != len(listed):
        raise ResourceError(f"{at}.{kind}: names a field twice")
    by_name = {item.name: item for item in fields}
    for name in listed:
        if name not in names:
            raise ResourceError(f"{at}.{kind}: {name!r} is not one of its fields")
        field = by_name.get(name)
        if field is None:  # the automatic id: its own index serves every query of it
            raise ResourceError(
                f"{at}.{kind}: {name!r} is the automatic id, which every query takes already"
            )
        if field.type_name not in _QUERIED_TYPES[kind]:
            takes = ", ".join(sorted(_QUERIED_TYPES[kind]))
            raise ResourceError(
                f"{at}.{kind}: {name!r} is a {field.type_name}; {kind} take fields of types {takes}"
            )
        if not field.indexable:
            raise ResourceError(
                f"{at}.fields.{name}: a queried field's max_length is at most 16383"
            )
    return tuple(listed)


def _key_fields(at: str, given: object, names: set[str]) -> tuple[str, ...]:
    """The key's fields: one field's name, or a list of several (a composite key)."""
    listed = [given] if isinstance(given, str) else given
    if not isinstance(listed, list) or not listed or not all(isinstance(n, str) for n in listed):
        raise ResourceError(f"{at}.key: must be a field's name, or a list of fields' names")
    for name in listed:
        if name not in names:
            raise ResourceError(f"{at}.key: {name!r} is not one of its fields")
    if len(set(listed)) != len(listed):
        raise ResourceError(f"{at}.key: names a field twice")
    return tuple(listed)


def _key_part(at: str, field: FieldSpec, *, composite: bool) -> FieldSpec:
    """A key's field, checked; a string one made to name a row in a path: never empty,
    no slash (whatever pattern it declares), and, as a part of a composite key, no comma."""
    name = field.name
    if not isinstance(field, StringField | IntegerField | UuidField):
        raise ResourceError(f"{at}.fields.{name}: a key is a string, integer or uuid field")
    if isinstance(field, StringField) and field.values is not None:
        raise ResourceError(f"{at}.fields.{name}: a key cannot list values")
    if field.nullable or field.default is not MISSING or field.database_default:
        raise ResourceError(f"{at}.fields.{name}: a key can be neither nullable nor defaulted")
    if not field.indexable:
        raise ResourceError(f"{at}.fields.{name}: a key's max_length is at most 16383")
    if not isinstance(field, StringField):
        return field
    return StringField(
        name,
        max_length=field.max_length,
        pattern=field.pattern or (PART_PATTERN if composite else KEY_PATTERN),
        segment=True,
        part=composite,
        fixed=field.fixed,
    )


def _field(at: str, name: str, spec: object) -> FieldSpec:
    _check_column_name(at, name, "a field name")
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict):
        raise ResourceError(f'{at}: must be a table, e.g. {{ type = "string" }}')
    kind = spec.get("type")
    if kind not in FIELD_TYPES:
        raise ResourceError(
            f"{at}: unknown type {kind!r} (types: {', '.join(FIELD_TYPES)})"
            if kind is not None
            else f"{at}: has no type (types: {', '.join(FIELD_TYPES)})"
        )
    unknown = set(spec) - _FIELD_KEYS[kind] - {"database_default"}
    if unknown:
        raise ResourceError(
            f"{at}: {sorted(unknown)[0]!r} does not apply to {_article(kind)} {kind} (it takes: "
            f"{', '.join(sorted(_FIELD_KEYS[kind] - {'type'}))})"
        )
    nullable = spec.get("nullable", False)
    if not isinstance(nullable, bool):
        raise ResourceError(f"{at}.nullable: must be true or false")
    common: dict[str, Any] = {"name": name, "nullable": nullable}
    field: FieldSpec
    if kind == "string":
        max_length = spec.get("max_length", 255)
        if not _is_int(max_length) or not 1 <= max_length <= 1_000_000:
            raise ResourceError(f"{at}.max_length: must be a whole number from 1 to 1000000")
        pattern = spec.get("pattern")
        if pattern is not None:
            if not isinstance(pattern, str):
                raise ResourceError(f"{at}.pattern: must be a regular expression (a string)")
            _check_pattern(f"{at}.pattern", pattern)
        values = spec.get("values")
        if values is not None:
            if (
                not isinstance(values, list)
                or not values
                or not all(isinstance(v, str) and v and "\x00" not in v for v in values)
                or len(set(values)) != len(values)
            ):
                raise ResourceError(
                    f'{at}.values: must list the distinct texts it takes, e.g. ["G", "PG"]'
                )
            if pattern is not None:
                raise ResourceError(f"{at}: takes values or a pattern, not both")
            if "max_length" not in spec:
                max_length = max(len(value) for value in values)
            if any(len(value) > max_length for value in values):
                raise ResourceError(f"{at}.values: one is longer than max_length {max_length}")
            values = tuple(values)
        fixed = spec.get("fixed", False)
        if not isinstance(fixed, bool):
            raise ResourceError(f"{at}.fixed: must be true or false")
        if fixed and max_length > 255:
            raise ResourceError(f"{at}.max_length: a fixed-length text (CHAR) is at most 255")
        enum = spec.get("enum")
        if enum is not None:
            if values is None:
                raise ResourceError(f"{at}.enum: names the type of an enumeration: list its values")
            _check_name(f"{at}.enum", enum, "a PostgreSQL type's name", _SQL_NAME)
        field = StringField(
            **common, max_length=max_length, pattern=pattern, values=values, fixed=fixed, enum=enum
        )
    elif kind == "integer":
        low, high = spec.get("minimum"), spec.get("maximum")
        for bound, value in (("minimum", low), ("maximum", high)):
            if value is not None and (not _is_int(value) or not INT64[0] <= value <= INT64[1]):
                raise ResourceError(f"{at}.{bound}: must be a whole number within 64 bits")
        field = IntegerField(**common, minimum=low, maximum=high)
    elif kind == "number":
        low, high = spec.get("minimum"), spec.get("maximum")
        for bound, value in (("minimum", low), ("maximum", high)):
            if value is not None and not (_is_int(value) or isinstance(value, float)):
                raise ResourceError(f"{at}.{bound}: must be a number")
        field = NumberField(
            **common,
            minimum=None if low is None else float(low),
            maximum=None if high is None else float(high),
        )
    elif kind == "decimal":
        field = _decimal(at, common, spec)
    elif kind == "boolean":
        field = BooleanField(**common)
    elif kind == "date":
        field = DateField(**common)
    elif kind == "uuid":
        field = UuidField(**common)
    elif kind == "json":
        field = JsonField(**common)
    elif kind == "binary":
        size = spec.get("max_length", 65_535)
        if not _is_int(size) or not 1 <= size <= 2**32 - 1:
            raise ResourceError(f"{at}.max_length: must be a whole number of bytes, 1 to 2^32-1")
        field = BinaryField(**common, max_length=size)
    else:
        precision = spec.get("precision", 6)
        if not _is_int(precision) or not 0 <= precision <= 6:
            raise ResourceError(
                f"{at}.precision: must be a whole number from 0 to 6 (fractional digits of a "
                "second)"
            )
        moments = {"timestamp": TimestampField, "time": TimeField}.get(kind, LocalDateTimeField)
        field = moments(**common, precision=precision)
    low, high = field.range()
    if low is not None and high is not None and low > high:
        raise ResourceError(f"{at}: minimum {low} is above maximum {high}")
    if "default" in spec:
        field = _with_default(at, field, spec["default"])
    filled = spec.get("database_default", False)
    if not isinstance(filled, bool):
        raise ResourceError(f"{at}.database_default: must be true or false")
    if filled and "default" in spec:
        raise ResourceError(
            f"{at}: a default of its own (`default`) or the database's (`database_default`), "
            "not both"
        )
    return dataclasses.replace(field, database_default=True) if filled else field


def _decimal(at: str, common: dict[str, Any], spec: dict[str, Any]) -> DecimalField:
    """``{ type = "decimal", precision = 10, scale = 2 }``: bounds as strings ("0.00") or
    whole numbers, never TOML floats (which are binary doubles)."""
    precision, scale = spec.get("precision", 18), spec.get("scale", 2)
    if not _is_int(precision) or not 1 <= precision <= DECIMAL_DIGITS:
        raise ResourceError(
            f"{at}.precision: must be a whole number from 1 to {DECIMAL_DIGITS} (digits in all)"
        )
    if not _is_int(scale) or not 0 <= scale <= precision:
        raise ResourceError(
            f"{at}.scale: must be a whole number from 0 to {precision} (digits after the point)"
        )
    field = DecimalField(**common, precision=precision, scale=scale)
    bounds: dict[str, Any] = {}
    for bound in ("minimum", "maximum"):
        if bound in spec:
            try:
                bounds[bound] = field.exact(spec[bound])
            except ValueError as error:
                raise ResourceError(f"{at}.{bound}: {error}") from None
    return dataclasses.replace(field, **bounds) if bounds else field


def _with_default(at: str, field: FieldSpec, value: object) -> FieldSpec:
    """``field`` with its declared default, checked against the field's own rules."""
    from pydantic import TypeAdapter, ValidationError

    if isinstance(value, datetime | date | time):
        value = value.isoformat()  # TOML has date-times, dates and times of its own
    try:
        checked = TypeAdapter(field.value_type()).validate_python(value)
    except ValidationError as error:
        reason = error.errors()[0]["msg"]
        raise ResourceError(f"{at}.default: {value!r} is not a valid value: {reason}") from None
    return dataclasses.replace(field, default=checked)


def _auto_key(at: str, spec: object) -> tuple[str, int]:
    """The automatic id's name and largest value: ``id = "AlbumId"``, or
    ``id = { name = "AlbumId", maximum = 2147483647 }`` (default: ``id``, 2**53 - 1)."""
    if spec is None:
        return AUTO_KEY, SAFE_INTEGERS[1]
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or set(spec) - {"name", "maximum"}:
        raise ResourceError(
            f'{at}.id: takes `name` and `maximum`, e.g. id = {{ name = "album_id", '
            "maximum = 2147483647 }"
        )
    name = spec.get("name", AUTO_KEY)
    if not isinstance(name, str):
        raise ResourceError(f"{at}.id.name: must be the id column's name")
    _check_column_name(f"{at}.id.name", name, "an id column's name")
    maximum = spec.get("maximum", SAFE_INTEGERS[1])
    if not _is_int(maximum) or not 1 <= maximum <= INT64[1]:
        raise ResourceError(f"{at}.id.maximum: must be a whole number within 64 bits")
    return name, int(maximum)


def _check_pattern(at: str, pattern: str) -> None:
    """A pattern is matched the same way wherever a value arrives (a body, a path, a
    batch, a CSV cell): by pydantic's regular expressions, which run in linear time and so
    take no look-around or back-reference."""
    from pydantic import Field, TypeAdapter
    from pydantic_core import SchemaError

    try:
        TypeAdapter(Annotated[str, Field(pattern=pattern)])
    except SchemaError as error:
        reason = str(error).strip().splitlines()[-1].removeprefix("error: ")
        raise ResourceError(f"{at}: not a usable regular expression: {reason}") from None


def _check_column_name(at: str, name: str, what: str) -> None:
    """A field's (or an id's) name: also a column's, beside twotier's own ``version``, and a
    query parameter's, beside ``after`` and ``limit``."""
    if name.lower() in _OWN_COLUMNS:
        own = "column (the row version)" if name.lower() == "version" else "list parameter"
        raise ResourceError(f"{at}: `{name}` is twotier's own {own}; choose another name")
    _check_name(at, name, what, _SQL_NAME)


def _check_name(
    at: str, name: str, what: str, form: re.Pattern[str] = _NAME, *, sql: bool = True
) -> None:
    """A name of the declaration's; ``sql``: one SQL names a table, column or type by, so
    no reserved word (a path or a schema's name is never in a statement: ``orders``'s
    singular may be ``order``)."""
    if not form.fullmatch(name):
        letters = "letters" if form is _SQL_NAME else "lower-case letters"
        raise ResourceError(
            f"{at}: {name!r} is not usable as {what}: {letters}, digits and _, "
            "starting with a letter, at most 63 characters"
        )
    if sql and name.lower() in RESERVED_WORDS:
        raise ResourceError(
            f"{at}: {name!r} is a reserved word in SQL; choose another name (e.g. {name}_)"
        )


def _text(at: str, spec: Mapping[str, object], name: str, default: str) -> str:
    value = spec.get(name, default)
    if not isinstance(value, str):
        raise ResourceError(f"{at}.{name}: must be a string")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _singular(name: str) -> str:
    """A resource's name for one of its rows (heroes → hero), for path parameters and
    schema names; ``singular = "…"`` overrides it."""
    if name.endswith("ies") and len(name) > 3:
        return name[:-3] + "y"
    if name.endswith(("sses", "shes", "ches", "xes", "zes", "oes")):
        return name[:-2]
    if name.endswith("s") and not name.endswith("ss") and len(name) > 1:
        return name[:-1]
    return name
