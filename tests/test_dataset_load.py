"""`twotier generate` and `twotier load`: the seed's data set, each database's bulk path."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import database_url, make_cache, open_store
from tests.heroes import HEROES, create, hero
from twotier.cache.base import Cache
from twotier.cache.resilient import ResilientCache
from twotier.dataset import CsvReader, write_csv
from twotier.policy import Outcome, ResourcePolicy, Tuning
from twotier.store.base import Query
from twotier.store.sql import SQLStore
from twotier.store.sql_rows import SQLRows

HEADER = ",".join(HEROES.columns)

TWOTIER = str(Path(sys.executable).with_name("twotier"))

TRICKY = (
    "1,Ada,Captain Ada,math,5,blue\n"
    '2,"NULL","say ""hi""",x,0,"a,b"\n'
    '3,héroïne 🦸,Back\\slash,\\N,4294967295,"multi\nline"\n'
)
BAD = (
    "4,ok,ok,ok,1,ok\n"
    "x,bad,id,p,1,c\n"
    "5,too,few,fields\n"
    "6,aaaaaaaaaaaaaaaaaaaaa,h,p,1,c\n"
    "7,n,h,p,-1,c\n"
    "8,n,h,p,1,c\n"
)


def generated(rows: int, seed: int = 0) -> str:
    out = io.StringIO()
    write_csv(out, HEROES, rows, seed)
    return out.getvalue()


def renamed(text: str, name: str) -> str:
    """``text`` with the first row's name changed to ``name``."""
    lines = text.split("\n")
    first = 1 if lines[0] == HEADER else 0
    cells = lines[first].split(",")
    lines[first] = ",".join([cells[0], name, *cells[2:]])
    return "\n".join(lines)


def policy_of(rows: SQLRows, cache: Cache, tuning: Tuning | None = None) -> ResourcePolicy:
    tuning = tuning or Tuning()
    return ResourcePolicy(rows, ResilientCache(cache, generation_ttl=tuning.generation_ttl), tuning)


@pytest.fixture
def heroes(store: SQLStore) -> SQLRows:
    return store.rows("heroes")


def test_generate_is_deterministic_and_fits_the_schema() -> None:
    text = generated(500, seed=7)
    assert text == generated(500, seed=7)
    assert text != generated(500, seed=8)
    lines = text.splitlines()
    assert lines[0] == HEADER
    reader = CsvReader(io.StringIO(text), HEROES)
    rows = [row for row, _ in reader]
    assert (len(rows), reader.bad_count, reader.header) == (500, 0, True)
    assert [r[0] for r in rows] == list(range(1, 501))


def test_reader_reports_bad_rows_by_line() -> None:
    reader = CsvReader(io.StringIO(BAD), HEROES)
    ids = [row[0] for row, _ in reader]
    assert ids == [4, 8]
    assert [(b.line, b.reason.split(" ")[0]) for b in reader.bad] == [
        (2, "id"),
        (3, "expected"),
        (4, "name"),
        (5, "xp"),
    ]
    assert not reader.header


def test_cells_are_checked_as_the_api_checks_them() -> None:
    """A number as JSON writes one, a key's pattern and its path rule: what the API refuses,
    a load refuses by line (float() took `1_000`, full-width digits and spaces, which MySQL's
    LOAD DATA reads otherwise; a key with `/` loaded and could never be read by its path)."""
    from tests.conftest import DECLARED
    from twotier.resources import load_resources

    resources = {resource.name: resource for resource in load_resources(DECLARED)}
    products = (
        "sku,name,category,price,stock,active\n"
        "A-1,Lamp,home,12.5,3,true\n"
        "A-2,Lamp,home,1_000,3,true\n"
        "A-3,Lamp,home,\uff11\uff12,3,true\n"
        "A-4,Lamp,home, 5,3,true\n"
        "A/5,Lamp,home,5,3,true\n"
        "A-6,Lamp,home,-0,3,true\n"
        "A-7,Lamp,home,5, 3,true\n"
    )
    reader = CsvReader(io.StringIO(products), resources["products"])
    read = [row for row, _ in reader]
    assert [row[0] for row in read] == ["A-1", "A-6"]
    assert str(read[1][3]) == "0.0"  # -0 is 0 to every database
    assert [b.line for b in reader.bad] == [3, 4, 5, 6, 8]
    assert all(b.reason.startswith(("price", "sku", "stock")) for b in reader.bad), reader.bad
    things = 'code,label\nabc,x\n"abc\n",y\nABC,z\n'
    reader = CsvReader(io.StringIO(things), resources["things"])
    assert [row for row, _ in reader] == [("abc", "x")]
    assert [(b.line, b.reason) for b in reader.bad] == [
        (3, "code string should match pattern '^[a-z]+$'"),  # `$` is the end, not a newline
        (5, "code string should match pattern '^[a-z]+$'"),
    ]


# Cells a line may hold: plain and signed numbers, the bounds' edges, spaces, NUL, non-ASCII
# digits, long text, empty cells; each column mostly from what its field takes.
_CELLS = st.sampled_from(
    ["0", "7", "-1", "+3", "4294967295", "4294967296", "99999999999999999999", "1_0", " 5",
     "\uff11", "", "x", "Ada", "a" * 20, "a" * 21, "é" * 20, "é" * 21, "a\x00b", "a\rb", " "]
)  # fmt: skip
_NUMBERS = st.one_of(st.sampled_from(["0", "7", "4294967295"]), _CELLS)
_TEXTS = st.one_of(st.sampled_from(["Ada", "", " ", "a" * 20, "é" * 20]), _CELLS)
_LINES = st.one_of(
    st.tuples(_NUMBERS, _TEXTS, _TEXTS, _TEXTS, _NUMBERS, _TEXTS).map(list),
    st.lists(_CELLS, min_size=5, max_size=7),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINES, min_size=1, max_size=20))
def test_a_line_read_at_once_is_read_as_cell_by_cell(lines: list[list[str]]) -> None:
    """Most lines are checked by one match of the whole line (``FieldSpec.cell_pattern``);
    what it takes and what it refuses are exactly what each field's own parser would."""
    fields = [HEROES.field(name) for name in HEROES.columns]
    reader = CsvReader(io.StringIO("id,name,hero,power,xp,color\n" + "".join(
        ",".join(cells) + "\n" for cells in lines
    )), HEROES)  # fmt: skip
    expected_rows, expected_bad = [], []
    for number, cells in enumerate(lines, start=2):
        if len(cells) != len(fields):
            expected_bad.append((number, "expected"))
            continue
        try:
            expected_rows.append(tuple(f.parse_text(c) for f, c in zip(fields, cells, strict=True)))
        except ValueError:
            expected_bad.append((number, "field"))
    assert [row for row, _ in reader] == expected_rows
    assert [(b.line, "expected" if b.reason.startswith("expected") else "field")
            for b in reader.bad] == expected_bad  # fmt: skip


async def load_text(
    store: SQLRows, text: str, tmp_path: Path, **options: bool
) -> tuple[int, CsvReader]:
    path = tmp_path / "data.csv"
    path.write_text(text, encoding="utf-8")
    strict = options.pop("strict", False)
    with path.open(encoding="utf-8", newline="") as source:
        reader = CsvReader(source, HEROES)
        policy = policy_of(store, await make_cache("memory"))
        loaded = await policy.bulk_load(
            reader,
            replace=options.get("replace", False),
            keep=lambda: not (strict and reader.bad_count),
        )
    return loaded, reader


async def test_load_keeps_every_value_exactly(heroes: SQLRows, tmp_path: Path) -> None:
    loaded, reader = await load_text(heroes, TRICKY, tmp_path)
    assert (loaded, reader.bad_count) == (3, 0)
    two, three = await heroes.get(2), await heroes.get(3)
    assert two is not None
    assert three is not None
    assert (two["name"], two["hero"], two["color"], two["xp"]) == ("NULL", 'say "hi"', "a,b", 0)
    assert (three["name"], three["hero"], three["power"]) == ("héroïne 🦸", "Back\\slash", "\\N")
    assert (three["xp"], three["color"]) == (4294967295, "multi\nline")
    assert two.version > 1_000_000_000  # a load version, above any updated row's


async def test_load_with_and_without_header(heroes: SQLRows, tmp_path: Path) -> None:
    text = generated(1000)
    loaded, reader = await load_text(heroes, text, tmp_path)
    assert (loaded, reader.header) == (1000, True)
    headerless = renamed(text.split("\n", 1)[1], "Renamed")
    loaded, reader = await load_text(heroes, headerless, tmp_path)
    assert (loaded, reader.header) == (1000, False)
    assert await heroes.count() == 1000  # same ids: replaced, not duplicated
    first = await heroes.get(1)
    assert first is not None
    assert first["name"] == "Renamed"
    created = await create(heroes, hero("n", xp=1))
    assert created["id"] == 1001  # the id sequence moved past the loaded ids


async def test_bad_rows_are_skipped_or_with_strict_nothing_loads(
    heroes: SQLRows, tmp_path: Path
) -> None:
    loaded, reader = await load_text(heroes, BAD, tmp_path, strict=True)
    assert (loaded, reader.bad_count) == (0, 4)
    assert await heroes.count() == 0
    loaded, reader = await load_text(heroes, BAD, tmp_path)
    assert loaded == 2
    assert await heroes.count() == 2


async def test_replace_empties_the_table_first(heroes: SQLRows, tmp_path: Path) -> None:
    await load_text(heroes, generated(50), tmp_path)
    loaded, _ = await load_text(heroes, TRICKY, tmp_path, replace=True)
    assert loaded == 3
    assert await heroes.count() == 3


@pytest.mark.parametrize("cache_kind", ["memory", "redis"])
async def test_a_load_leaves_no_stale_cache_entry(
    sqlite_store: SQLStore, cache_kind: str, tmp_path: Path
) -> None:
    cache: Cache = await make_cache(cache_kind)
    try:
        policy = policy_of(sqlite_store.rows("heroes"), cache, Tuning(ttl=600))
        await policy.bulk_load(
            CsvReader(io.StringIO(generated(10)), HEROES), replace=False, keep=lambda: True
        )
        updated = await policy.update(1, {"name": "Cached"})
        assert updated is not None
        assert (await policy.read(1)).outcome == Outcome.HIT
        by_xp = await policy.lookup("xp", [updated["xp"]])
        reloaded = renamed(generated(10), "Reloaded")
        await policy.bulk_load(
            CsvReader(io.StringIO(reloaded), HEROES), replace=False, keep=lambda: True
        )
        served = await policy.read(1)
        assert served.outcome == Outcome.MISS
        assert b'"Reloaded"' in (served.body or b"")
        assert (await policy.lookup("xp", [updated["xp"]])).outcome == Outcome.MISS
        assert by_xp.body != (await policy.lookup("xp", [updated["xp"]])).body
    finally:
        await cache.clear()
        await cache.close()


def test_cli_generates_and_loads_from_s3(moto_endpoint: str, tmp_path: Path) -> None:
    import boto3

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWOTIER_", "AWS_"))}
    env |= {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TWOTIER_DATABASE_URL": database_url("sqlite", tmp_path),
    }
    data = tmp_path / "mp6data.csv"
    made = subprocess.run(
        [TWOTIER, "generate", "--rows", "2000", str(data)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "wrote 2000 heroes" in made.stderr
    headerless = tmp_path / "headerless.csv"
    headerless.write_text(data.read_text().split("\n", 1)[1] + BAD.replace("4,", "2001,", 1))
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket="seed")
    s3.upload_file(str(headerless), "seed", "data/mp6data.csv")

    strict = subprocess.run(
        [TWOTIER, "load", "--strict", "s3://seed/data/mp6data.csv"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert strict.returncode == 1
    assert "line 2002: id must be" in strict.stderr
    assert "nothing was loaded" in strict.stderr

    loaded = subprocess.run(
        [TWOTIER, "load", "s3://seed/data/mp6data.csv"], env=env, capture_output=True, text=True
    )
    assert loaded.returncode == 0, loaded.stderr
    assert "read 2006 rows (without header): 2002 loaded, 4 bad" in loaded.stderr

    missing = subprocess.run(
        [TWOTIER, "load", "s3://seed/nothing.csv"], env=env, capture_output=True, text=True
    )
    assert missing.returncode == 2
    assert "cannot read s3://seed/nothing.csv" in missing.stderr


@pytest.mark.parametrize("name", ["products", "events"])
async def test_every_resource_generates_and_loads(
    store_kind: str, name: str, tmp_path: Path
) -> None:
    # Client-given text keys; booleans, date-times, nulls and defaults through each bulk path.
    from tests.conftest import DECLARED
    from twotier.resources import load_resources

    resources = load_resources(DECLARED)
    [resource] = [r for r in resources if r.name == name]
    store: Any = open_store(database_url(store_kind, tmp_path), resources)
    await store.init_schema()
    rows = store.rows(name)
    try:
        out = io.StringIO()
        write_csv(out, resource, 200, seed=3)
        text = out.getvalue()
        assert text.splitlines()[0] == ",".join(resource.columns)
        reader = CsvReader(io.StringIO(text), resource)
        expected = [values for values, _ in CsvReader(io.StringIO(text), resource)]
        policy = policy_of(rows, await make_cache("memory"))
        loaded = await policy.bulk_load(reader, replace=True, keep=lambda: True)
        assert (loaded, reader.bad_count) == (200, 0)
        stored = sorted(await rows.find(Query(limit=1000)), key=lambda r: r.key)
        assert [tuple(r.values[c] for c in resource.columns) for r in stored] == sorted(
            expected, key=lambda values: values[resource.columns.index(resource.key)]
        )
    finally:
        await store.drop_schema()
        await store.close()


async def test_a_file_saved_with_a_byte_order_mark_loads_with_its_header(
    tmp_path: Path,
) -> None:
    """Spreadsheets save "CSV UTF-8" with a byte order mark before the header: it is not
    part of the first column's name (the header would else be taken for a bad row)."""
    from twotier.config import Settings
    from twotier.loader import load_csv

    data = tmp_path / "excel.csv"
    data.write_bytes(b"\xef\xbb\xbf" + generated(20).encode())
    settings = Settings(database_url=database_url("sqlite", tmp_path), cache_url="memory://")
    reader, loaded = await load_csv(settings, data)
    assert (loaded, reader.header, reader.bad_count) == (20, True, 0)
