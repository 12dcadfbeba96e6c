"""Exact decimals on every store: what is written is what is stored, cached and read, to the
last digit, never a binary double in between (a NUMERIC price read back as 0.13 after 0.125
was cached was the defect that kept them out)."""

from __future__ import annotations

from collections.abc import AsyncIterator
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
"""

#: Values a double cannot hold exactly, the largest and smallest the columns take, zeros.
WRITTEN = {
    "a": ("0.10", "0.000001"),
    "b": ("99999999.99", "999999999.999999"),
    "c": ("-12.30", "-0.333333"),
    "d": ("0.01", None),
    "e": ("0.00", "0.000000"),
}


@pytest.fixture
def declared(tmp_path: Path) -> str:
    path = tmp_path / "prices.toml"
    path.write_text(PRICES)
    return str(path)


@pytest.fixture
async def prices(store_kind: str, tmp_path: Path, declared: str) -> AsyncIterator[Rows]:
    store: Any = open_store(database_url(store_kind, tmp_path), load_resources(declared))
    await store.init_schema()
    await store.drop_schema()
    await store.init_schema()
    try:
        yield store.rows("prices")
    finally:
        await store.drop_schema()
        await store.close()


def _row(sku: str, amount: str, rate: str | None) -> dict[str, Any]:
    return {"sku": sku, "amount": Decimal(amount), "rate": None if rate is None else Decimal(rate)}


async def _create(prices: Rows, rows: list[dict[str, Any]]) -> None:
    for row in rows:  # one a call: dynalite has no transactions
        await prices.create_many([row])


async def test_every_digit_written_is_read_back(prices: Rows) -> None:
    await _create(prices, [_row(sku, *values) for sku, values in WRITTEN.items()])
    for sku, (amount, rate) in WRITTEN.items():
        record = await prices.get(sku)
        assert record is not None
        # The same digits, the column's scale included (str: 0.10 is not 0.1).
        assert str(record.values["amount"]) == amount
        assert (None if rate is None else rate) == (
            None if record.values["rate"] is None else str(record.values["rate"])
        )
        assert orjson.loads(to_json(record.values))["amount"] == amount
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
    spec = prices.resource
    lines = []
    for number, (sku, (amount, rate)) in enumerate(WRITTEN.items(), start=1):
        cells = (sku, amount, "" if rate is None else rate)
        values = tuple(
            spec.field(name).parse_text(cell)
            for name, cell in zip(spec.columns, cells, strict=True)
        )
        lines.append((values, f"line {number}"))
    assert await prices.bulk_load(lines, replace=False, keep=lambda: True) == len(WRITTEN)
    for sku, (amount, _) in WRITTEN.items():
        record = await prices.get(sku)
        assert record is not None
        assert str(record.values["amount"]) == amount


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
        made = client.post("/prices", json={"sku": "p", "amount": "0.10", "rate": 3})
        assert made.status_code == 201, made.text
        assert made.json() == {"sku": "p", "amount": "0.10", "rate": "3.000000"}
        assert client.get("/prices/p").json()["amount"] == "0.10"
        assert client.get("/prices/p").headers["x-cache"] == "HIT"
        for body, says in (
            ({"amount": 0.125}, "must be a decimal given as a string"),
            ({"amount": "0.125"}, "more than 2 digits after the point"),
            ({"amount": "123456789.00"}, "at most 8 digits before the point"),
            ({"amount": "1e3"}, "must be a decimal such as"),
        ):
            refused = client.patch(
                "/prices/p", json=body, headers={"content-type": "application/merge-patch+json"}
            )
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
