"""A declaration written from a database's own tables (``twotier db introspect``).

A store reads its tables (``Store.introspect``) and describes each one as a declaration
would (``Introspected``: the settings of ``[resources.NAME]``), or says why it is left out.
``declaration_text`` writes them as one TOML file, with a comment for each table or column
left out, and checks it with the same parser as any declaration, so that what it writes is
what ``db init`` adopts and ``serve`` serves, unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from twotier.errors import ResourceError
from twotier.resources.declaration import parse_resources

_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@dataclass(frozen=True)
class Introspected:
    """One table as found: the settings of its resource (None if it is left out), why it
    is left out, and the columns its resource leaves out (each with why)."""

    table: str
    settings: dict[str, Any] | None
    left_out: str | None = None
    columns_left_out: tuple[str, ...] = field(default=())
    #: Its foreign keys of one column: (its column, the table referred to, that column).
    references: tuple[tuple[str, str, str], ...] = field(default=())

    @property
    def resource(self) -> str:
        return resource_name(self.table)


def resource_name(table: str) -> str:
    """The API's name of a table's resource: its name in snake_case (``InvoiceLine`` →
    ``invoice_line``, ``superheroes`` as it is)."""
    return _WORD_START.sub("_", table).lower()


def checked(found: Sequence[Introspected]) -> list[Introspected]:
    """``found``, each table's settings checked by the declaration's parser on their own:
    a table the parser refuses (a name it cannot take, a second table of the same resource
    name) is left out, with the parser's reason. Then each served table's foreign keys to
    another served table's key become its relations (``relations_of``)."""
    result: list[Introspected] = []
    taken: dict[str, str] = {}
    for item in found:
        if item.settings is not None:
            why = _refused(item)
            if why is None and item.resource in taken:
                why = f"its resource name {item.resource!r} is {taken[item.resource]}'s too"
            if why is not None:
                item = Introspected(item.table, None, why)
            else:
                taken[item.resource] = item.table
        result.append(item)
    return relations_of(result)


def relations_of(found: Sequence[Introspected]) -> list[Introspected]:
    """``found`` with a relation for each foreign key of a served table that names a served
    table's key of one column: named for its column (``ArtistId`` → ``artist``), its reverse
    for the table it is in (``album``; ``album_by_<relation>`` for a second one into the
    same table)."""
    served = {item.table: item for item in found if item.settings is not None}
    keys = {table: _key_column(item.settings or {}) for table, item in served.items()}
    # Each served table's relations to one, first: the names a reverse must not take.
    ones: dict[str, dict[str, dict[str, str]]] = {}
    for item in served.values():
        fields = (item.settings or {})["fields"]
        named: dict[str, dict[str, str]] = {}
        for column, table, referred in item.references:
            target = served.get(table)
            if target is None or keys[table] != referred or column not in fields:
                continue
            name = _relation_name(column, target.resource, {*fields, *named})
            if name is not None:
                named[name] = {"resource": target.resource, "field": column}
        ones[item.table] = named
    taken = {
        item.resource: {*(item.settings or {})["fields"], *ones[table]}
        for table, item in served.items()
    }
    for item in served.values():
        for name, relation in list(ones[item.table].items()):
            names = taken[relation["resource"]]
            reverse = item.resource
            if reverse in names:
                reverse = f"{item.resource}_by_{name}"
            if reverse in names:  # no name left for it: not a relation then
                del ones[item.table][name]
                continue
            names.add(reverse)
            if reverse != item.resource:
                relation["reverse"] = reverse
    return [
        replace(item, settings={**item.settings, "relations": ones[item.table]})
        if item.settings is not None and ones.get(item.table)
        else item
        for item in found
    ]


def _key_column(settings: dict[str, Any]) -> str | None:
    """The column of a resource's key of one field (None for a composite key)."""
    key = settings.get("key")
    if isinstance(key, str):
        return key
    if key is not None:
        return None
    auto = settings.get("id", "id")
    return str(auto["name"] if isinstance(auto, dict) else auto)


def _relation_name(column: str, target: str, taken: set[str]) -> str | None:
    """A foreign key's relation name: its column without an id ending, in snake_case; else
    the resource it names; None if both are taken (or unusable)."""
    stem = resource_name(column)
    for suffix in ("_id", "id"):
        if stem.endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)].rstrip("_")
            break
    for name in (stem, target):
        if name and name not in taken and re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
            return name
    return None


def _refused(item: Introspected) -> str | None:
    import tomlkit  # the writer's library: loaded by the commands that write, never to serve

    alone = {name: value for name, value in (item.settings or {}).items() if name != "relations"}
    text = tomlkit.dumps({"resources": {item.resource: alone}})
    try:
        parse_resources(text, "introspected")
    except ResourceError as error:
        return str(error).removeprefix("introspected: ")
    return None


def declaration_text(found: Sequence[Introspected], source: str) -> str:
    """The declaration of every table served among ``found``, with comments for what is
    left out; checked by the declaration's own parser (ResourceError if it would not
    load: a bug, since each table's settings were checked as they were made)."""
    import tomlkit

    document = tomlkit.document()
    document.add(tomlkit.comment(f"Written by `twotier db introspect` from {source}."))
    document.add(
        tomlkit.comment("Serve it as it is (db init, then serve), or edit it: docs/resources.md.")
    )
    left_out = [item for item in found if item.settings is None]
    if left_out:
        document.add(tomlkit.nl())
        document.add(tomlkit.comment("Tables left out:"))
        for item in left_out:
            document.add(tomlkit.comment(f"  {item.table}: {item.left_out}"))
    resources = tomlkit.table(is_super_table=True)
    for item in found:
        if item.settings is None:
            continue
        resources.add(item.resource, _resource_table(item))
    document.add(tomlkit.nl())
    document.add("resources", resources)
    text = tomlkit.dumps(document)
    parse_resources(text, "the introspected declaration")
    return text


def _resource_table(item: Introspected) -> Any:
    assert item.settings is not None
    import tomlkit

    settings = dict(item.settings)
    fields = settings.pop("fields")
    relations = settings.pop("relations", {})
    table = tomlkit.table()
    for note in item.columns_left_out:
        table.add(tomlkit.comment(f"left out: {note}"))
    for name, value in settings.items():
        table.add(name, _inline(value) if isinstance(value, dict) else value)
    columns = tomlkit.table()
    for name, spec in fields.items():
        columns.add(name, _inline(spec))
    table.add("fields", columns)
    if relations:
        referring = tomlkit.table()
        for name, relation in relations.items():
            referring.add(name, _inline(relation))
        table.add("relations", referring)
    return table


def _inline(values: dict[str, Any]) -> Any:
    import tomlkit

    inline = tomlkit.inline_table()
    inline.update(values)
    return inline
