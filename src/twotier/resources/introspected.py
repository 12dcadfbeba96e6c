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
from dataclasses import dataclass, field
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
    name) is left out, with the parser's reason."""
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
    return result


def _refused(item: Introspected) -> str | None:
    import tomlkit  # the writer's library: loaded by the commands that write, never to serve

    text = tomlkit.dumps({"resources": {item.resource: item.settings}})
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
    table = tomlkit.table()
    for note in item.columns_left_out:
        table.add(tomlkit.comment(f"left out: {note}"))
    for name, value in settings.items():
        table.add(name, _inline(value) if isinstance(value, dict) else value)
    columns = tomlkit.table()
    for name, spec in fields.items():
        columns.add(name, _inline(spec))
    table.add("fields", columns)
    return table


def _inline(values: dict[str, Any]) -> Any:
    import tomlkit

    inline = tomlkit.inline_table()
    inline.update(values)
    return inline
