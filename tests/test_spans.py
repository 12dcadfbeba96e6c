"""Order keys keep the order of values, and a page's cover holds every key of its range."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from twotier import spans

_VALUES: list[st.SearchStrategy[Any]] = [
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.decimals(allow_nan=False, allow_infinity=False, places=4),
    st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=["Cs"])),
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7))])),
    st.times(),
]


def _byte_order(value: Any) -> Any:
    """Values in the order lists give them: text by its UTF-8 bytes."""
    return value.encode() if isinstance(value, str) else value


@given(st.one_of(*(st.tuples(kind, kind) for kind in _VALUES)))
def test_an_order_key_never_falls_as_the_value_grows(pair: tuple[Any, Any]) -> None:
    low, high = sorted(pair, key=_byte_order)
    assert spans.order_key(low) is not None
    assert spans.order_key(low) <= spans.order_key(high)  # type: ignore[operator]


def test_values_a_database_holds_equal_have_one_key() -> None:
    assert spans.order_key(-0.0) == spans.order_key(0.0) == spans.order_key(0)
    assert spans.order_key(Decimal("1.50")) == spans.order_key(1.5)
    moment = datetime(2026, 12, 7, 12, tzinfo=UTC)
    assert spans.order_key(moment) == spans.order_key(
        moment.astimezone(timezone(timedelta(hours=5)))
    )
    assert spans.order_key(b"bytes") is None


@given(
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=0, max_value=2**32 - 1),
)
def test_a_cover_holds_its_range_and_a_key_inside_meets_it(a: int, b: int, c: int) -> None:
    low, high = min(a, b), max(a, b)
    nodes = spans.cover(low, high)
    assert 1 <= len(nodes) <= spans.MOST_NODES
    assert len({level for level, _ in nodes}) == 1
    # Every key within the range has an ancestor among the nodes: its write reaches them.
    inside = low + c % (high - low + 1)
    assert set(spans.ancestors(inside)) & set(nodes)
    for key in (low, high):
        assert set(spans.ancestors(key)) & set(nodes)


def test_a_narrow_range_is_covered_narrowly_and_far_writes_miss_it() -> None:
    key = spans.order_key
    nodes = spans.cover(key(100), key(120))  # type: ignore[arg-type]
    assert not set(spans.ancestors(key(5000))) & set(nodes)  # type: ignore[arg-type]
    assert not set(spans.ancestors(key(-100))) & set(nodes)  # type: ignore[arg-type]
    low, high = spans.prefix_keys("Cap")
    nodes = spans.cover(low, high)
    assert set(spans.ancestors(key("Captain"))) & set(nodes)  # type: ignore[arg-type]
    assert not set(spans.ancestors(key("Batman"))) & set(nodes)  # type: ignore[arg-type]
    assert spans.ancestors(0)[-1] == spans.ROOT == spans.cover(0, 2**32 - 1)[0]
    assert spans.order_key(date(2026, 1, 1)) < spans.order_key(date(2026, 1, 2))  # type: ignore[operator]
    assert spans.order_key(time(1)) < spans.order_key(time(2))  # type: ignore[operator]


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_the_names_a_write_drops_are_its_ancestors(key: int) -> None:
    """``Nodes.ancestors`` writes ``ancestors``' arithmetic out for speed: they agree."""
    nodes = spans.Nodes("{t}")
    assert nodes.ancestors(key) == [nodes.name(node) for node in spans.ancestors(key)]
    assert nodes.root == nodes.ancestors(key)[-1]
