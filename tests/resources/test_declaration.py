"""Resource declarations: the built-in heroes, the products of the docs, and every mistake
a file can hold, each refused with one line naming the file, the resource and the field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from twotier.errors import ResourceError
from twotier.resources import load_resources, parse_resources
from twotier.resources.fields import BooleanField, IntegerField, NumberField, StringField

PRODUCTS = """
[resources.heroes]            # served at /heroes
table = "superheroes"
lookups = ["xp"]              # each value's rows cached as one entry (the seed's lookup)

[resources.heroes.fields]
name  = { type = "string", max_length = 20 }
hero  = { type = "string", max_length = 20 }
power = { type = "string", max_length = 20 }
xp    = { type = "integer", minimum = 0, maximum = 4294967295 }
color = { type = "string", max_length = 20 }

[resources.products]          # served at /products
table = "products"
key = "sku"                   # a client-given key; without `key`, an auto-increment integer `id`
lookups = ["category"]

[resources.products.fields]
sku      = { type = "string", max_length = 32 }
name     = { type = "string", max_length = 200 }
category = { type = "string", max_length = 40 }
price    = { type = "number", minimum = 0 }
stock    = { type = "integer", minimum = 0 }
active   = { type = "boolean", default = true }
"""


def test_the_builtin_declaration_is_the_seeds_table() -> None:
    [heroes] = load_resources(None)
    assert (heroes.name, heroes.table, heroes.key, heroes.auto_key) == (
        "heroes",
        "superheroes",
        "id",
        True,
    )
    assert heroes.columns == ("id", "name", "hero", "power", "xp", "color")
    assert heroes.lookups == ("xp",)
    assert heroes.path_parameter == "hero_id"
    assert heroes.key_field == IntegerField("id", minimum=1, maximum=4_294_967_295)
    assert heroes.field("xp") == IntegerField("xp", minimum=0, maximum=4_294_967_295)
    assert heroes.field("name") == StringField("name", max_length=20)


def test_the_documented_example_works_exactly(tmp_path: object) -> None:
    heroes, products = parse_resources(PRODUCTS, "products.toml")
    assert heroes == load_resources(None)[0].__class__(**{**heroes.__dict__})
    assert (products.key, products.auto_key, products.lookups) == ("sku", False, ("category",))
    assert products.columns == ("sku", "name", "category", "price", "stock", "active")
    assert products.path_parameter == "product_sku"
    assert products.field("price") == NumberField("price", minimum=0.0)
    assert products.field("active") == BooleanField("active", default=True)
    made = products.create_model.model_validate(
        {"sku": "A-1", "name": "Lamp", "category": "home", "price": 12, "stock": 3}
    )
    assert made.model_dump() == {
        "sku": "A-1",
        "name": "Lamp",
        "category": "home",
        "price": 12.0,
        "stock": 3,
        "active": True,
    }
    assert products.parse_key("A-1") == "A-1"
    assert products.parse_key("x" * 33) is None


def test_every_type_and_option() -> None:
    [things] = parse_resources(
        """
        [resources.things]
        key = "code"
        [resources.things.fields]
        code = { type = "string", max_length = 8, pattern = "^[A-Z]+$" }
        count = { type = "integer", minimum = -5, maximum = 5, default = 0 }
        ratio = { type = "number", nullable = true }
        seen = { type = "timestamp", nullable = true, default = 2026-11-24T10:00:00Z }
        note = "string"
        """,
        "things.toml",
    )
    model = things.create_model
    made = model.model_validate({"code": "ABC", "note": "n", "seen": "2026-11-24T12:00:00+02:00"})
    assert made.model_dump() == {
        "code": "ABC",
        "count": 0,
        "ratio": None,
        "seen": datetime(2026, 11, 24, 10, tzinfo=UTC),
        "note": "n",
    }
    assert things.field("seen").default == datetime(2026, 11, 24, 10, tzinfo=UTC)
    for bad in ({"code": "abc", "note": "n"}, {"code": "ABC", "note": "n", "count": 6}):
        with pytest.raises(ValueError):  # noqa: PT011 - pydantic's ValidationError
            model.model_validate(bad)
    patch = things.patch_model.model_validate({"ratio": None, "count": None, "note": "m"})
    assert things.changes_of(patch) == {"ratio": None, "note": "m"}  # count is not nullable


def x(settings: str = "", fields: str = "a = 'string'") -> str:
    """A resource ``x`` with these settings and fields."""
    return f"[resources.x]\n{settings}\n[resources.x.fields]\n{fields}\n"


MISTAKES = [
    (x(fields="a = { type = 'text' }"), "resources.x.fields.a: unknown type 'text'"),
    (x(fields="a = {}"), "resources.x.fields.a: has no type"),
    (x("lookups = ['b']"), "resources.x.lookups: 'b' is not one of its fields"),
    (x("key = 'b'"), "resources.x.key: 'b' is not one of its fields"),
    (
        x("key = 'a'", "a = 'number'"),
        "resources.x.fields.a: a key is a string, integer or uuid field",
    ),
    (x() + "[resources.x]\n", "not valid TOML"),
    (
        x("table = 't'") + "[resources.y]\ntable = 't'\n[resources.y.fields]\na = 'string'",
        "resources.y: table 't' is already served by resources.x",
    ),
    (
        "[resources.'x; drop table t']\n[resources.'x; drop table t'.fields]\na = 'string'",
        "is not usable as a resource name",
    ),
    (x(fields="'a\"b' = 'string'"), "resources.x.fields.a\"b: 'a\"b' is not usable as a field"),
    (x(fields="order = 'string'"), "resources.x.fields.order: 'order' is a reserved word"),
    (
        "[resources.select]\n[resources.select.fields]\na = 'string'",
        "resources.select.table: 'select' is a reserved word",
    ),
    (x(fields="version = 'integer'"), "`version` is twotier's own column"),
    (x(fields="after = 'integer'"), "`after` is twotier's own list parameter"),
    (x(fields="id = 'integer'"), "`id` is the automatic id; leave it out"),
    (x("id = 'AlbumId'", "albumid = 'integer'"), "`AlbumId` is the automatic id"),
    (x("id = 'a'\nkey = 'a'"), "an automatic id (`id`) and a client-given key (`key`)"),
    (x("id = { name = 'x y' }"), "resources.x.id.name: 'x y' is not usable"),
    (x(fields="Version = 'integer'"), "`Version` is twotier's own column"),
    (x(fields="Name = 'string'\nname = 'string'"), "differ only in case"),
    (x(fields="Order = 'string'"), "'Order' is a reserved word"),
    (
        x(fields="a = { type = 'string', pattern = '(?=x)x' }"),
        "resources.x.fields.a.pattern: not a usable regular expression: look-around",
    ),
    (
        x(fields="a = { type = 'string', pattern = '(a)\\1' }"),
        "not a usable regular expression: backreferences",
    ),
    (
        "[resources.batch]\n[resources.batch.fields]\na = 'string'",
        "/batch is one of twotier's own paths",
    ),
    (x(fields="a = { type = 'string', minimum = 1 }"), "'minimum' does not apply to a string"),
    (
        x(fields="a = { type = 'integer', default = 'no' }"),
        "resources.x.fields.a.default: 'no' is not a valid value",
    ),
    (
        x(fields="a = { type = 'integer', minimum = 5, maximum = 1 }"),
        "minimum 5 is above maximum 1",
    ),
    (
        x(fields="a = { type = 'string', pattern = '(' }"),
        "resources.x.fields.a.pattern: not a usable regular expression",
    ),
    (x("colour = 'red'"), "resources.x: unknown setting 'colour'"),
    (x("filters = ['b']"), "resources.x.filters: 'b' is not one of its fields"),
    (x("key = 'a'\nfilters = ['a']"), "resources.x.filters: 'a' is the key"),
    (x("lookups = ['a']\nfilters = ['a']"), "resources.x.filters: 'a' is a lookup"),
    (x("unindexed_filters = 'yes'"), "resources.x.unindexed_filters: must be true or false"),
    ("[resources.x]", "resources.x: declares no fields"),
    ("[other]\nx = 1", "unknown top-level key 'other'"),
    ("", "declares no resource"),
]


@pytest.mark.parametrize(("text", "says"), MISTAKES)
def test_mistakes_are_one_line_naming_the_place(text: str, says: str) -> None:
    with pytest.raises(ResourceError) as raised:
        parse_resources(text, "mine.toml")
    message = str(raised.value)
    assert message.startswith("mine.toml: "), message
    assert says in message, message
    assert "\n" not in message


def test_an_unreadable_file_is_one_line(tmp_path: object) -> None:
    with pytest.raises(ResourceError, match=r"nowhere\.toml: cannot read it"):
        load_resources(f"{tmp_path}/nowhere.toml")


def test_names_as_the_database_has_them() -> None:
    """Tables and fields keep the database's own spelling, mixed case included; an
    automatic id may have any column's name."""
    [albums] = parse_resources(
        """
        [resources.albums]
        table = "Album"
        id = { name = "AlbumId", maximum = 2147483647 }
        lookups = ["ArtistId"]
        [resources.albums.fields]
        Title = { type = "string", max_length = 160 }
        ArtistId = { type = "integer", minimum = 1, maximum = 2147483647 }
        """,
        "chinook.toml",
    )
    assert (albums.table, albums.key, albums.auto_key) == ("Album", "AlbumId", True)
    assert albums.columns == ("AlbumId", "Title", "ArtistId")
    assert albums.key_field == IntegerField("AlbumId", minimum=1, maximum=2147483647)
    assert albums.path_parameter == "AlbumId"  # named for its row already
    assert set(albums.out_model.model_fields) == {"AlbumId", "Title", "ArtistId"}
    assert albums.parse_key("7") == 7
    assert albums.parse_key("2147483648") is None
    [short] = parse_resources(x("id = 'ArtistId'"), "short.toml")
    assert (short.key, short.key_max) == ("ArtistId", 2**53 - 1)


@pytest.mark.parametrize(
    ("pattern", "good", "bad"),
    [
        (None, ["abc", "a b", "abc\n", "é"], ["", "a/b", "a\x00"]),
        ("^[a-z]+$", ["abc"], ["abc\n", "ABC", ""]),
        ("^[a-z/]+$", ["abc"], ["a/b"]),  # a key names a row in a path: never a slash
    ],
)
def test_a_key_is_checked_by_one_validator(
    pattern: str | None, good: list[str], bad: list[str]
) -> None:
    """A key is valid or not alike as a path segment and in a body: ``$`` matches at the
    very end only (not before a final newline), and a slash is refused whatever the
    pattern says."""
    declared = "" if pattern is None else f", pattern = {pattern!r}"
    [things] = parse_resources(
        x("key = 'code'", f"code = {{ type = 'string', max_length = 20{declared} }}"), "t.toml"
    )
    for text in good:
        assert things.parse_key(text) == text
        things.create_model.model_validate({"code": text})
    for text in bad:
        assert things.parse_key(text) is None
        with pytest.raises(ValueError):  # noqa: PT011 - pydantic's ValidationError
            things.create_model.model_validate({"code": text})


def test_lists_filter_on_what_an_index_serves() -> None:
    """The key, the lookups and the declared filters; every field only where the
    declaration opts in to scans."""
    [heroes] = load_resources(None)
    assert heroes.filterable == ("id", "name", "xp")
    assert heroes.indexed == ("xp", "name")
    [scanned] = parse_resources(x("unindexed_filters = true", "a = 'string'\nb = 'string'"), "t")
    assert scanned.filterable == ("id", "a", "b")


def test_minus_zero_is_zero_everywhere() -> None:
    """-0.0 and 0.0 are one value to every database (a filter on either finds both), so
    they are one value to the cache: a lookup filed under -0.0 was never invalidated by a
    write of a row at 0.0."""
    from twotier.policy import CacheKeys

    [readings] = parse_resources(
        x("lookups = ['level']", "level = 'number'\nnote = 'string'"), "readings.toml"
    )
    keys = CacheKeys(readings)
    assert keys.lookup("level", -0.0) == keys.lookup("level", 0.0)
    made = readings.create_model.model_validate({"level": -0.0, "note": "n"})
    assert str(made.model_dump()["level"]) == "0.0"
    assert str(readings.field("level").parse_text("-0")) == "0.0"
