"""The column types beyond text, numbers and instants, on every store: exact decimals, dates
and date-times without a time zone. What is written is what is stored, cached and read, to
the last digit and the last microsecond: never a binary double in between (a NUMERIC price
read back as 0.13 after 0.125 was cached was the defect that kept decimals out), never a
wall-clock reading moved to UTC."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.conftest import database_url, open_store
from twotier.api.app import create_app
from twotier.config import Settings
from twotier.resources import load_resources, to_json
from twotier.store.base import Rows

PRICES = """
[resources.prices]
table = "decimal_prices"
key = "sku"
lookups = ["amount"]
[resources.prices.fields]
sku = { type = "string", max_length = 20 }
amount = { type = "decimal", precision = 10, scale = 2, minimum = "-99999999.99" }
rate = { type = "decimal", precision = 15, scale = 6, nullable = true }
day = { type = "date", nullable = true }
at = { type = "local_datetime", precision = 3, nullable = true }

[resources.tokens]
table = "uuid_tokens"
key = "token"
lookups = ["owner"]
[resources.tokens.fields]
token = { type = "uuid" }
owner = { type = "uuid", nullable = true }
grade = { type = "string", values = ["G", "PG-13", "NC-17"], default = "G" }
doc = { type = "json", nullable = true }
data = { type = "binary", max_length = 300, nullable = true }

[resources.shifts]
table = "time_shifts"
key = "name"
lookups = ["starts"]
[resources.shifts.fields]
name = { type = "string", max_length = 10 }
starts = { type = "time", precision = 3 }
ends = { type = "time", nullable = true }

[resources.codes]
table = "char_codes"
key = "code"
lookups = ["label"]
[resources.codes.fields]
code = { type = "string", max_length = 3, fixed = true }
label = { type = "string", max_length = 10, fixed = true, nullable = true }
"""

#: Values a double cannot hold exactly, the largest and smallest the columns take, zeros;
#: dates and wall-clock times at the ends of what every database keeps.
WRITTEN = {
    "a": ("0.10", "0.000001", "2026-12-07", "2026-12-07T23:59:59.999"),
    "b": ("99999999.99", "999999999.999999", "9999-12-31", "9999-12-31T23:59:59"),
    "c": ("-12.30", "-0.333333", "1000-01-01", "1000-01-01T00:00:00.001"),
    "d": ("0.01", None, None, None),
    "e": ("0.00", "0.000000", "2024-02-29", "2024-03-31T02:30:00"),
}


@pytest.fixture
def declared(tmp_path: Path) -> str:
    path = tmp_path / "prices.toml"
    path.write_text(PRICES)
    return str(path)


@asynccontextmanager
async def _served(store_kind: str, tmp_path: Path, declared: str, name: str) -> AsyncIterator[Rows]:
    """The rows of resource ``name`` in a store of ``store_kind``, its table made anew."""
    store: Any = open_store(database_url(store_kind, tmp_path), load_resources(declared))
    await store.init_schema()
    await store.drop_schema()
    await store.init_schema()
    try:
        yield store.rows(name)
    finally:
        await store.drop_schema()
        await store.close()


@pytest.fixture
async def prices(store_kind: str, tmp_path: Path, declared: str) -> AsyncIterator[Rows]:
    async with _served(store_kind, tmp_path, declared, "prices") as rows:
        yield rows


@pytest.fixture
async def shifts(store_kind: str, tmp_path: Path, declared: str) -> AsyncIterator[Rows]:
    async with _served(store_kind, tmp_path, declared, "shifts") as rows:
        yield rows


@pytest.fixture
async def codes(store_kind: str, tmp_path: Path, declared: str) -> AsyncIterator[Rows]:
    async with _served(store_kind, tmp_path, declared, "codes") as rows:
        yield rows


@pytest.fixture
async def tokens(store_kind: str, tmp_path: Path, declared: str) -> AsyncIterator[Rows]:
    async with _served(store_kind, tmp_path, declared, "tokens") as rows:
        yield rows


def _row(
    sku: str, amount: str, rate: str | None, day: str | None = None, at: str | None = None
) -> dict[str, Any]:
    return {
        "sku": sku,
        "amount": Decimal(amount),
        "rate": None if rate is None else Decimal(rate),
        "day": None if day is None else date.fromisoformat(day),
        "at": None if at is None else datetime.fromisoformat(at),
    }


def _as_written(values: dict[str, Any]) -> tuple[Any, ...]:
    """A row's values as text, as they were written above."""
    json = orjson.loads(to_json(values))
    return json["amount"], json["rate"], json["day"], json["at"] and _millis(json["at"])


def _millis(text: str) -> str:
    """A local date-time's text as written above (milliseconds only where there are some)."""
    moment = datetime.fromisoformat(text)
    return moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")


async def _create(prices: Rows, rows: list[dict[str, Any]]) -> None:
    for row in rows:  # one a call: dynalite has no transactions
        await prices.create_many([row])


async def test_every_digit_written_is_read_back(prices: Rows) -> None:
    await _create(prices, [_row(sku, *values) for sku, values in WRITTEN.items()])
    for sku, written in WRITTEN.items():
        record = await prices.get(sku)
        assert record is not None
        # The same digits, the column's scale included (0.10 is not 0.1); the same wall-clock
        # reading, no zone added.
        assert _as_written(record.values) == written
    changed = await prices.update("a", {"amount": Decimal("12345678.91")})
    assert changed is not None
    again = await prices.get("a")
    assert again is not None
    assert str(again.values["amount"]) == "12345678.91"


async def test_a_lookup_on_a_decimal_finds_its_rows(prices: Rows) -> None:
    await _create(
        prices, [_row("x", "1.50", None), _row("y", "1.50", "2.5"), _row("z", "1.05", None)]
    )
    found = await prices.lookup("amount", [Decimal("1.50")])
    assert sorted(row["sku"] for row in found[Decimal("1.50")]) == ["x", "y"]


async def test_a_bulk_load_keeps_every_digit(prices: Rows) -> None:
    cells = [
        (sku, *("" if value is None else value for value in written))
        for sku, written in WRITTEN.items()
    ]
    lines = _load_lines(prices, cells)
    assert await prices.bulk_load(lines, replace=False, keep=lambda: True) == len(WRITTEN)
    for sku, written in WRITTEN.items():
        record = await prices.get(sku)
        assert record is not None
        assert _as_written(record.values) == written


#: A document with every kind of JSON value in it.
DOC = {
    "name": "Zoë ☃",
    "tags": ["a", "b", None, True, False],
    "n": {"int": 10**15, "float": 1.5, "neg": -0.25, "zero": 0},
    "empty": {},
}

#: Every byte value, and more than a VARBINARY(255) would hold.
BLOB = bytes(range(256)) + b"\x00\xff" * 20

TOKEN = "0b8e9ad6-4d4b-4a43-9c4b-4c9e7f7d2a10"
OWNER = "6f1c0a52-58e1-4b7e-8f0e-2a9c33d1c4b5"


def _token(grade: str) -> dict[str, Any]:
    """The row of TOKEN, with every kind of value, at ``grade``."""
    return {"token": TOKEN, "owner": OWNER, "grade": grade, "doc": DOC, "data": BLOB}


async def _holds(rows: Rows, values: dict[str, Any]) -> None:
    record = await rows.get(values[rows.resource.key])
    assert record is not None
    assert record.values == values


def _load_lines(rows: Rows, cells: Sequence[tuple[str, ...]]) -> list[tuple[tuple[Any, ...], str]]:
    """CSV cells as a bulk load takes them: each parsed by its field, with its line."""
    spec = rows.resource
    return [
        (
            tuple(
                spec.field(name).parse_text(cell)
                for name, cell in zip(spec.columns, row, strict=True)
            ),
            f"line {number}",
        )
        for number, row in enumerate(cells, start=1)
    ]


async def test_a_time_of_day_reads_as_written(shifts: Rows) -> None:
    """Times of day, to the microsecond where declared, from midnight to its last moment:
    read, looked up and bulk loaded as written, on every store (MySQL's driver hands a
    TIME over as a duration)."""
    written = {
        "early": (time(0, 0), time(23, 59, 59, 999999)),
        "late": (time(23, 59, 59, 999000), None),
        "noon": (time(12, 0, 0, 125000), time(12, 30, 0, 1)),
    }
    await _create(shifts, [{"name": n, "starts": s, "ends": e} for n, (s, e) in written.items()])
    for name, (starts, ends) in written.items():
        record = await shifts.get(name)
        assert record is not None
        assert (record.values["starts"], record.values["ends"]) == (starts, ends), name
    found = await shifts.lookup("starts", [time(12, 0, 0, 125000)])
    assert [record.key for record in found[time(12, 0, 0, 125000)]] == ["noon"]
    lines = _load_lines(shifts, [("night", "22:15:00.5", "06:00")])
    assert await shifts.bulk_load(lines, replace=False, keep=lambda: True) == 1
    night = await shifts.get("night")
    assert night is not None
    assert (night.values["starts"], night.values["ends"]) == (time(22, 15, 0, 500000), time(6))


def test_over_http_a_time_of_day_is_its_text(tmp_path: Path, declared: str) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/shifts.db",
        cache_url="memory://",
        resources=declared,
        require_key_for_writes=False,
        follow="off",
    )
    with TestClient(create_app(settings)) as client:
        made = client.post("/shifts", json={"name": "a", "starts": "07:30:15.1239", "ends": None})
        assert made.status_code == 201, made.text
        assert made.json()["starts"] == "07:30:15.123000"  # cut to its precision
        assert client.get("/shifts/a").json() == made.json()
        for value, says in (
            ("24:00:00", "must be a real time of day"),
            ("07:30:00Z", "must be a time of day without an offset"),
            ("7:30", "must be a time of day without an offset"),
        ):
            refused = client.post("/shifts", json={"name": "b", "starts": value})
            assert refused.status_code == 422, (value, refused.text)
            assert says in refused.text
        schema = client.get("/openapi.json").json()["components"]["schemas"]["Shift"]
        assert schema["properties"]["starts"]["format"] == "local-time"


async def test_a_fixed_length_text_reads_as_written(codes: Rows) -> None:
    """A CHAR pads its text with spaces (PostgreSQL hands them back, MySQL trims them):
    read, looked up and keyed by, it is the text written, on every store."""
    await _create(codes, [{"code": "a", "label": "x y"}, {"code": "abc", "label": None}])
    for code, label in (("a", "x y"), ("abc", None)):
        record = await codes.get(code)
        assert record is not None
        assert record.values == {"code": code, "label": label}
    found = await codes.lookup("label", ["x y"])
    assert [record.key for record in found["x y"]] == ["a"]
    changed = await codes.update("abc", {"label": "z"})
    assert changed is not None
    assert changed[1].values["label"] == "z"
    assert (await codes.get("abc")).values["label"] == "z"  # type: ignore[union-attr]
    assert sorted(await codes.get_many(["a", "abc"])) == ["a", "abc"]


def test_a_fixed_length_text_refuses_a_trailing_space(tmp_path: Path, declared: str) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/codes.db",
        cache_url="memory://",
        resources=declared,
        require_key_for_writes=False,
        follow="off",
    )
    with TestClient(create_app(settings)) as client:
        refused = client.post("/codes", json={"code": "ab ", "label": None})
        assert refused.status_code == 422
        assert "must not end in a space" in refused.text
        assert client.post("/codes", json={"code": "ab", "label": "c"}).status_code == 201
        assert client.get("/codes/ab").json() == {"code": "ab", "label": "c"}


async def test_a_uuid_keys_a_row_and_is_looked_up(tokens: Rows) -> None:
    await _create(
        tokens,
        [
            _token("PG-13"),
            {"token": OWNER, "owner": None, "grade": "G", "doc": ["a", "list"], "data": b""},
        ],
    )
    await _holds(tokens, _token("PG-13"))
    other = await tokens.get(OWNER)
    assert other is not None
    assert other.values["doc"] == ["a", "list"]
    assert other.values["data"] == b""  # empty, not null
    changed = await tokens.update(OWNER, {"doc": "a string is a document too"})
    assert changed is not None
    again = await tokens.get(OWNER)
    assert again is not None
    assert again.values["doc"] == "a string is a document too"
    assert [row["token"] for row in (await tokens.lookup("owner", [OWNER]))[OWNER]] == [TOKEN]
    assert await tokens.delete(OWNER)
    assert await tokens.get(OWNER) is None


async def test_a_bulk_load_takes_uuids_enumerations_and_documents(tokens: Rows) -> None:
    cells = [
        (
            TOKEN.upper(),
            OWNER,
            "NC-17",
            orjson.dumps(DOC).decode(),
            base64.b64encode(BLOB).decode(),
        ),
        (OWNER, "", "G", "", ""),
    ]
    lines = _load_lines(tokens, cells)
    assert await tokens.bulk_load(lines, replace=False, keep=lambda: True) == 2
    await _holds(tokens, _token("NC-17"))
    other = await tokens.get(OWNER)
    assert other is not None
    assert other.values == {"token": OWNER, "owner": None, "grade": "G", "doc": None, "data": None}


def test_an_enumeration_is_checked_by_the_database_too(tmp_path: Path, declared: str) -> None:
    """A table twotier makes refuses other values itself, whoever writes."""
    import sqlite3

    path = tmp_path / "enum.db"
    settings = Settings(database_url=f"sqlite:///{path}", cache_url="memory://", resources=declared)
    with TestClient(create_app(settings)):
        pass  # the schema is made
    with sqlite3.connect(path) as conn, pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute(f"INSERT INTO uuid_tokens (token, grade) VALUES ('{TOKEN}', 'R')")


def _patch(client: TestClient, path: str, body: dict[str, Any]) -> Any:
    return client.patch(path, json=body, headers={"content-type": "application/merge-patch+json"})


def test_over_http_decimals_are_strings_and_a_double_is_refused(
    tmp_path: Path, declared: str
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/prices.db",
        cache_url="memory://",
        resources=declared,
        require_key_for_writes=False,
        follow="off",
    )
    with TestClient(create_app(settings)) as client:
        made = client.post(
            "/prices",
            json={"sku": "p", "amount": "0.10", "rate": 3, "at": "2026-03-29T02:30:00.1239"},
        )
        assert made.status_code == 201, made.text
        assert made.json() == {
            "sku": "p",
            "amount": "0.10",
            "rate": "3.000000",
            "day": None,
            "at": "2026-03-29T02:30:00.123000",  # cut to its precision, never moved
        }
        assert client.get("/prices/p").json()["amount"] == "0.10"
        assert client.get("/prices/p").headers["x-cache"] == "HIT"
        for body, says in (
            ({"amount": 0.125}, "must be a decimal given as a string"),
            ({"amount": "0.125"}, "more than 2 digits after the point"),
            ({"amount": "123456789.00"}, "at most 8 digits before the point"),
            ({"amount": "1e3"}, "must be a decimal such as"),
            ({"at": "2026-03-29T02:30:00Z"}, "must be a date and time without an offset"),
            ({"day": "2026-02-30"}, "must be a real date"),
            ({"day": "26-02-03"}, "must be a date, years 1000 to 9999"),
        ):
            refused = _patch(client, "/prices/p", body)
            assert refused.status_code == 422, refused.text
            assert says in refused.text
        assert client.get("/prices/p").json()["amount"] == "0.10"  # nothing was written
        by_amount = client.get("/prices", params={"amount": "0.1"})
        assert by_amount.status_code == 200, by_amount.text
        assert [row["sku"] for row in by_amount.json()["items"]] == ["p"]
        schema = client.get("/openapi.json").json()["components"]["schemas"]
        [answer] = [s for name, s in schema.items() if name == "Price"]
        assert answer["properties"]["amount"]["type"] == "string"
        assert answer["properties"]["amount"]["format"] == "decimal"
        day = _patch(client, "/prices/p", {"day": "2026-12-07"})
        assert day.json()["day"] == "2026-12-07"
        # A UUID in any case names one row: its canonical text, lower case.
        made = client.post("/tokens", json={"token": TOKEN.upper(), "owner": OWNER})
        assert made.status_code == 201, made.text
        mine = {"token": TOKEN, "owner": OWNER, "grade": "G", "doc": None, "data": None}
        assert made.json() == mine
        assert client.get(f"/tokens/{TOKEN.upper()}").json() == mine
        assert client.get("/tokens/not-a-uuid").status_code == 422
        assert client.get("/tokens", params={"owner": OWNER.upper()}).json()["items"] == [mine]
        # An enumeration takes its listed values only, and says which.
        refused = _patch(client, f"/tokens/{TOKEN}", {"grade": "R"})
        assert refused.status_code == 422
        assert "'G', 'PG-13' or 'NC-17'" in refused.text
        grade = schema["Token"]["properties"]["grade"]
        assert grade["enum"] == ["G", "PG-13", "NC-17"]
        # A JSON document, as sent (member order aside); no NUL in its text.
        documented = _patch(client, f"/tokens/{TOKEN}", {"doc": DOC})
        assert documented.status_code == 200, documented.text
        assert client.get(f"/tokens/{TOKEN}").json()["doc"] == DOC
        nul = client.put(f"/tokens/{TOKEN}", json=mine | {"doc": {"a": "x\u0000y"}})
        assert nul.status_code == 422
        assert "NUL" in nul.text
        # Bytes as base64, both ways; anything else, or too many, refused.
        sent = base64.b64encode(BLOB).decode()
        stored = _patch(client, f"/tokens/{TOKEN}", {"data": sent})
        assert stored.status_code == 200, stored.text
        assert client.get(f"/tokens/{TOKEN}").json()["data"] == sent
        for wrong, says in (("not base64!", "must be base64"), ("A" * 404, "at most 300 bytes")):
            refused = _patch(client, f"/tokens/{TOKEN}", {"data": wrong})
            assert refused.status_code == 422
            assert says in refused.text
        assert schema["Token"]["properties"]["data"]["anyOf"][0]["contentEncoding"] == "base64"
