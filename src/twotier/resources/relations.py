"""Relations between resources: a field that holds another resource's key (a foreign key).

A resource declares each of its references by name::

    [resources.albums.relations]
    artist = { resource = "artists", field = "artist_id" }   # reverse = "albums" by default

and both sides get a relation: ``albums.artist``, the row an album points at (to one), and
``artists.albums``, the rows that point at an artist (to many: the referencing field is a
lookup, so they are read and cached as one). ``linked`` checks the references against every
resource once all are parsed, and gives each resource its relations.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twotier.errors import ResourceError
from twotier.resources.resource import Relation, Resource

_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_SETTINGS = frozenset({"resource", "field", "reverse"})


@dataclass(frozen=True)
class Reference:
    """A reference as declared, before the other resource is known."""

    name: str
    resource: str
    field: str
    reverse: str | None


def references(at: str, spec: object, fields: Mapping[str, Any]) -> tuple[Reference, ...]:
    """The ``relations`` setting of one resource (``fields``: its fields by name)."""
    if not isinstance(spec, dict):
        raise ResourceError(
            f'{at}.relations: must be a table, e.g. {{ artist = {{ resource = "artists", '
            'field = "artist_id" }} }}'
        )
    found = []
    for name, settings in spec.items():
        where = f"{at}.relations.{name}"
        _check_name(where, name)
        if not isinstance(settings, dict):
            raise ResourceError(f'{where}: must be a table, e.g. {{ resource = "artists", ... }}')
        unknown = set(settings) - _SETTINGS
        if unknown:
            raise ResourceError(
                f"{where}: unknown setting {sorted(unknown)[0]!r} (settings: "
                f"{', '.join(sorted(_SETTINGS))})"
            )
        resource, field = settings.get("resource"), settings.get("field")
        if not isinstance(resource, str) or not isinstance(field, str):
            raise ResourceError(
                f"{where}: names the other resource (`resource`) and the field of this one "
                "that holds its key (`field`)"
            )
        if field not in fields:
            raise ResourceError(f"{where}: {field!r} is not one of its fields")
        if name in fields:
            raise ResourceError(f"{where}: {name!r} is a field's name; name the relation apart")
        reverse = settings.get("reverse")
        if reverse is not None:
            if not isinstance(reverse, str):
                raise ResourceError(f"{where}.reverse: must be a name")
            _check_name(f"{where}.reverse", reverse)
        found.append(Reference(name, resource, field, reverse))
    return tuple(found)


def _check_name(at: str, name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ResourceError(
            f"{at}: {name!r} is not usable as a relation's name: lower-case letters, digits "
            "and _, starting with a letter"
        )


def linked(
    resources: Sequence[Resource], declared: Mapping[str, tuple[Reference, ...]], where: str
) -> tuple[Resource, ...]:
    """``resources`` with their relations, each reference checked against the resource it
    names: its key is one field of the same type as the referencing field."""
    by_name = {resource.name: resource for resource in resources}
    relations: dict[str, list[Relation]] = {name: [] for name in by_name}
    for name, refs in declared.items():
        for ref in refs:
            at = f"{where}: resources.{name}.relations.{ref.name}"
            target = by_name.get(ref.resource)
            if target is None:
                raise ResourceError(
                    f"{at}: no resource {ref.resource!r} (resources: {', '.join(by_name)})"
                )
            if target.composite:
                raise ResourceError(
                    f"{at}: {ref.resource} is keyed by several fields; a relation names a key "
                    "of one field"
                )
            holder = by_name[name]
            field, key = holder.field(ref.field), target.key_field
            if field.type_name != key.type_name:
                raise ResourceError(
                    f"{at}: {ref.field} is {_article(field.type_name)} {field.type_name}, and "
                    f"{ref.resource}'s key {target.key} {_article(key.type_name)} "
                    f"{key.type_name}: a reference holds the key as it is"
                )
            relations[name].append(Relation(ref.name, ref.resource, ref.field, to_one=True))
            reverse = ref.reverse or name
            relations[ref.resource].append(Relation(reverse, name, ref.field, to_one=False))
    result = []
    for resource in resources:
        mine = relations[resource.name]
        seen: dict[str, Relation] = {}
        for relation in mine:
            other = seen.get(relation.name)
            if other is not None:
                raise ResourceError(
                    f"{where}: resources.{resource.name}: two relations are named "
                    f"{relation.name!r} ({_told(other)} and {_told(relation)}): give one "
                    "another name (`reverse` names the side of the resource referred to)"
                )
            if not relation.to_one and relation.name in resource.columns:
                raise ResourceError(
                    f"{where}: resources.{resource.name}: {_told(relation)} is named "
                    f"{relation.name!r} like a field of its own; give it another name with "
                    f"`reverse` in resources.{relation.resource}.relations"
                )
            seen[relation.name] = relation
        lookups = resource.lookups + tuple(
            relation.field
            for relation in mine
            if relation.to_one and relation.field not in resource.lookups
        )
        # A key field needs no lookup of its own (a composite key's first one: its index).
        lookups = tuple(dict.fromkeys(name for name in lookups if name != resource.key))
        filters = tuple(name for name in resource.filters if name not in lookups)
        result.append(
            dataclasses.replace(resource, relations=tuple(mine), lookups=lookups, filters=filters)
        )
    return tuple(result)


def _told(relation: Relation) -> str:
    if relation.to_one:
        return f"the {relation.resource} its {relation.field} names"
    return f"the {relation.resource} whose {relation.field} names it"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
