"""A declaration written from tables: their names, each table checked by the declaration's
own parser, and the file it makes (what is left out said in comments)."""

from __future__ import annotations

from typing import Any

import pytest

from twotier.resources import parse_resources
from twotier.resources.introspected import (
    Introspected,
    checked,
    declaration_text,
    resource_name,
)


@pytest.mark.parametrize(
    ("table", "resource"),
    [
        ("superheroes", "superheroes"),
        ("Album", "album"),
        ("InvoiceLine", "invoice_line"),
        ("MediaType", "media_type"),
        ("HTTPLog", "http_log"),
        ("playlist_track", "playlist_track"),
        ("Order2Item", "order2_item"),
    ],
)
def test_a_resource_is_named_for_its_table_in_snake_case(table: str, resource: str) -> None:
    assert resource_name(table) == resource


def _settings(table: str, **more: Any) -> dict[str, Any]:
    return {"table": table, "fields": {"Name": {"type": "string", "max_length": 20}}} | more


def test_each_table_is_checked_alone_and_a_refused_one_is_left_out_with_why() -> None:
    found = checked(
        [
            Introspected("Album", _settings("Album")),
            Introspected("album", _settings("album")),  # the same resource name
            Introspected("Batch", _settings("Batch")),  # one of twotier's paths
            Introspected("Order", _settings("Order")),  # a reserved word
            Introspected("Pair", None, "a primary key of several columns (a, b): not served yet"),
        ]
    )
    served = [item.table for item in found if item.settings is not None]
    assert served == ["Album"]
    why = {item.table: item.left_out for item in found}
    assert why["album"] == "its resource name 'album' is Album's too"
    assert "/batch is one of twotier's own paths" in str(why["Batch"])
    assert "reserved word" in str(why["Order"])


def test_the_file_loads_as_any_declaration_and_says_what_is_left_out() -> None:
    found = checked(
        [
            Introspected(
                "MediaType",
                _settings("MediaType", id={"name": "MediaTypeId", "maximum": 2**31 - 1}),
                None,
                ("column 'Born' is DATE, which twotier cannot serve yet",),
            ),
            Introspected("Pair", None, "a primary key of several columns (a, b): not served yet"),
        ]
    )
    text = declaration_text(found, "sqlite:///music.db")
    assert "# Written by `twotier db introspect` from sqlite:///music.db." in text
    assert "#   Pair: a primary key of several columns (a, b): not served yet" in text
    assert "# left out: column 'Born' is DATE" in text
    [media_type] = parse_resources(text, "written")
    assert (media_type.name, media_type.table, media_type.key) == (
        "media_type",
        "MediaType",
        "MediaTypeId",
    )
    assert media_type.auto_key
    assert media_type.key_max == 2**31 - 1
