"""The seed's batch protocol: parsing, the policy's batch reads and writes, and POST /batch."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from twotier import batch
from twotier.cache.base import Cache
from twotier.cache.resilient import ResilientCache
from twotier.policy import AnswerLimits, Outcome, Tuning
from twotier.service import Service
from twotier.store.sql import SQLStore


def row(name: str, xp: int | str) -> dict[str, Any]:
    return {"name": name, "hero": "H", "power": "P", "xp": xp, "color": "C"}


def read(sqls: list[Any], use_cache: str = "True", **extra: Any) -> dict[str, Any]:
    return {"USE_CACHE": use_cache, "REQUEST": "read", "SQLS": sqls, **extra}


def write(sqls: list[Any], use_cache: str = "True") -> dict[str, Any]:
    return {"USE_CACHE": use_cache, "REQUEST": "write", "SQLS": sqls}


@pytest.mark.parametrize(
    ("event", "status", "detail"),
    [
        ([], 400, "must be a JSON object"),
        ({"REQUEST": "read", "SQLS": []}, 400, "USE_CACHE: Field required"),
        (read([1], use_cache="maybe"), 400, "USE_CACHE"),
        ({"USE_CACHE": "True", "REQUEST": "delete", "SQLS": []}, 400, "REQUEST"),
        ({"USE_CACHE": "True", "REQUEST": "read", "SQLS": "1,2"}, 400, "SQLS"),
        (read([1], EXTRA=1), 400, "EXTRA: Extra inputs are not permitted"),
        (read([1, -2]), 400, "SQLS.1: Input should be greater than or equal to 0"),
        (read([1, True]), 400, "SQLS.1"),
        (read([1.5]), 400, "SQLS.0"),
        (read([0], KEY="id"), 400, "ids start at 1"),
        (read([1], KEY="name"), 400, "KEY"),
        (read(list(range(11))), 400, "at most 10 allowed"),
        (write([row("a", 1), row("b", -1)]), 400, "SQLS.1.xp"),
        (write([row("a", 1) | {"id": 4}]), 400, "SQLS.0.id: Extra inputs"),
        (write([row("x" * 21, 1)]), 400, "SQLS.0.name"),
        (write([["a", "b", "c", 1]]), 400, "SQLS.0"),
        (write([]) | {"KEY": "id"}, 400, "KEY applies to reads only"),
    ],
)
def test_malformed_events_are_400_with_a_detail(event: Any, status: int, detail: str) -> None:
    with pytest.raises(batch.BatchError) as raised:
        batch.parse(event, max_items=10)
    assert raised.value.status == status
    assert detail in raised.value.detail


def test_seed_values_are_accepted_in_their_seed_forms() -> None:
    parsed = batch.parse(read(["5", 6, " 7 "], use_cache="False"), 10)
    assert (parsed.use_cache, parsed.read_by, parsed.values) == (False, "xp", [5, 6, 7])
    assert batch.parse(read([1], use_cache=True), 10).use_cache is True  # type: ignore[arg-type]
    heroes = batch.parse(write([row("a", "12"), ["b", "h", "p", 3, "c"]]), 10).rows
    assert heroes == [
        {"name": "a", "hero": "H", "power": "P", "xp": 12, "color": "C"},
        {"name": "b", "hero": "h", "power": "p", "xp": 3, "color": "c"},
    ]


def service_of(
    store: SQLStore, cache: Cache, tuning: Tuning | None = None, limits: AnswerLimits | None = None
) -> Service:
    tuning = tuning or Tuning()
    resilient = ResilientCache(cache, generation_ttl=tuning.generation_ttl)
    return Service(store, resilient, [store.rows("heroes").resource], tuning=tuning, limits=limits)


@pytest.fixture
def policy(sqlite_store: SQLStore, cache: Cache) -> Service:
    return service_of(sqlite_store, cache, Tuning(ttl=60))


async def answer(service: Service, event: Any) -> tuple[int, Any, Outcome | None]:
    status, body, outcome = await batch.serve(service, event, 10_000)
    return status, orjson.loads(body), outcome


async def test_write_then_read_by_xp_in_request_order(policy: Service) -> None:
    status, body, _ = await answer(
        policy, write([row("a", 5), row("b", 7), row("c", 5), row("d", 9)])
    )
    assert (status, body) == (200, {"statusCode": 200, "body": "write success"})

    status, body, outcome = await answer(policy, read([7, 5, 8, 7]))
    assert (status, outcome) == (200, Outcome.MISS)
    names = [r["name"] for r in body["body"]]
    assert names == ["b", "a", "c", "b"]  # request order, by id within one xp, repeats kept
    assert list(body["body"][0]) == ["id", "name", "hero", "power", "xp", "color"]

    cached = await answer(policy, read([7, 5, 8, 7]))
    assert cached[2] == Outcome.HIT
    assert cached[1] == body
    uncached = await answer(policy, read([7, 5, 8, 7], use_cache="False"))
    assert (uncached[1], uncached[2]) == (body, Outcome.BYPASS)


async def test_writes_keep_xp_reads_coherent(policy: Service) -> None:
    await answer(policy, write([row("a", 5)]))
    assert len((await answer(policy, read([5])))[1]["body"]) == 1
    await answer(policy, write([row("b", 5)], use_cache="False"))  # still writes through
    after = await answer(policy, read([5]))
    assert [r["name"] for r in after[1]["body"]] == ["a", "b"]


async def test_read_by_id(policy: Service) -> None:
    records = await policy.resource("heroes").create_many([row(n, 1) for n in "abc"])
    ids = [r.key for r in records]
    event = read([ids[2], 999, ids[0], ids[2]], KEY="id")
    first = await answer(policy, event)
    assert [r["name"] for r in first[1]["body"]] == ["c", "a", "c"]
    assert first[2] == Outcome.MISS  # 999 was never cached (the others were written through)
    assert (await answer(policy, event))[2] == Outcome.HIT  # ... and now it is, as absent
    await policy.resource("heroes").update(ids[0], {"name": "z"})
    second = await answer(policy, event)
    assert [r["name"] for r in second[1]["body"]] == ["c", "z", "c"]
    bypass = await answer(policy, event | {"USE_CACHE": "False"})
    assert bypass[1] == second[1]


async def test_a_bad_row_writes_nothing(policy: Service) -> None:
    status, body, _ = await answer(policy, write([row("ok", 1), row("bad", "x")]))
    assert status == 400
    assert body["statusCode"] == 400
    assert "SQLS.1.xp" in body["body"]["detail"]
    assert (await answer(policy, read([1])))[1]["body"] == []


async def test_concurrent_batch_misses_share_one_query(
    policy: Service, sqlite_store: SQLStore
) -> None:
    import asyncio

    await policy.resource("heroes").create_many([row(f"n{i}", i % 4) for i in range(20)])
    calls = 0
    original = sqlite_store.rows("heroes").lookup

    async def counting(field: str, xps: Any, limit: Any = None) -> Any:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return await original(field, xps, limit)

    sqlite_store.rows("heroes").lookup = counting  # type: ignore[method-assign,assignment]
    answers = await asyncio.gather(*(answer(policy, read([0, 1, 2, 3])) for _ in range(10)))
    assert calls == 1
    assert len({orjson.dumps(a[1]) for a in answers}) == 1


def test_post_batch_answers_the_same_object(client: TestClient) -> None:
    wrote = client.post("/batch", json=write([row("a", 3), row("b", 3)]))
    assert (wrote.status_code, wrote.json()) == (200, {"statusCode": 200, "body": "write success"})
    first = client.post("/batch", json=read([3]))
    assert first.headers["x-cache"] == "MISS"
    assert [r["name"] for r in first.json()["body"]] == ["a", "b"]
    assert client.post("/batch", json=read([3])).headers["x-cache"] == "HIT"
    bad = client.post("/batch", json=read(["x"]))
    assert bad.status_code == 400
    assert bad.json()["statusCode"] == 400
    assert "SQLS.0" in bad.json()["body"]["detail"]
    assert client.post("/batch", json=[1]).json()["statusCode"] == 400


def test_post_batch_protocol_errors(embedded: TestClient) -> None:
    malformed = embedded.post(
        "/batch", content=b'{"USE_CACHE": ', headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["detail"].startswith("malformed JSON body")
    text = embedded.post("/batch", content=b"x", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415
    huge = embedded.post("/batch", json=read(list(range(2000))))
    assert huge.status_code == 413


@pytest.fixture
def bounded(sqlite_store: SQLStore, cache: Cache) -> Service:
    """A service whose batch answers hold at most 10 rows."""
    return service_of(sqlite_store, cache, Tuning(ttl=60), AnswerLimits(rows=10))


def counted_reads(store: SQLStore) -> list[int]:
    """Rows each ``by_xp`` call of ``store`` read, from now on."""
    reads: list[int] = []
    original = store.rows("heroes").lookup

    async def counting(field: str, xps: Any, limit: Any = None) -> Any:
        found = await original(field, xps, limit)
        reads.append(sum(len(rows) for rows in found.values()))
        return found

    store.rows("heroes").lookup = counting  # type: ignore[method-assign,assignment]
    return reads


@pytest.mark.parametrize("use_cache", ["True", "False"])
async def test_a_batch_answer_is_bounded_in_rows(
    bounded: Service, sqlite_store: SQLStore, use_cache: str
) -> None:
    await bounded.resource("heroes").create_many([row(f"n{i}", i % 40) for i in range(80)])
    reads = counted_reads(sqlite_store)
    # Within the bound: 5 values of 2 rows.
    status, body, _ = await answer(bounded, read([0, 1, 2, 3, 4], use_cache))
    assert (status, len(body["body"])) == (200, 10)
    # One value asked many times (the reproduction), and many distinct values.
    for sqls in ([7] * 6, list(range(40))):
        status, body, _ = await answer(bounded, read(sqls, use_cache))
        assert status == 400
        assert body["body"]["detail"] == (
            "the answer would hold more than 10 rows (TWOTIER_BATCH_MAX_ROWS): ask for fewer "
            "values in SQLS per request, or repeat a value fewer times"
        )
    # The database never read much more than the bound for one request.
    assert max(reads) <= 11
    assert sum(reads[1:]) <= 2 + 2 * 11


async def test_a_batch_answer_is_bounded_in_bytes(sqlite_store: SQLStore, cache: Cache) -> None:
    policy = service_of(sqlite_store, cache, limits=AnswerLimits(bytes=1024))
    records = await policy.resource("heroes").create_many([row("x" * 20, 1) for _ in range(30)])
    status, body, _ = await answer(policy, read([1]))
    assert status == 400
    assert "more than 1024 bytes (TWOTIER_BATCH_MAX_ANSWER_BYTES)" in body["body"]["detail"]
    ids = [r.key for r in records]
    assert (await answer(policy, read(ids[:5], KEY="id")))[0] == 200
    status, body, _ = await answer(policy, read(ids, KEY="id"))
    assert status == 400


async def test_a_small_read_sharing_a_cut_fill_still_gets_its_answer(
    bounded: Service, sqlite_store: SQLStore
) -> None:
    import asyncio

    await bounded.resource("heroes").create_many([row(f"n{i}", i) for i in range(30)])
    original = sqlite_store.rows("heroes").lookup

    async def slow(field: str, xps: Any, limit: Any = None) -> Any:
        await asyncio.sleep(0.05)  # so that both requests are under way together
        return await original(field, xps, limit)

    sqlite_store.rows("heroes").lookup = slow  # type: ignore[method-assign,assignment]
    large, small = await asyncio.gather(
        answer(bounded, read(list(range(30)))), answer(bounded, read([25]))
    )
    assert large[0] == 400
    assert (small[0], [r["name"] for r in small[1]["body"]]) == (200, ["n25"])


@pytest.mark.parametrize("field", ["KEY", "RESOURCE"])
def test_a_null_key_or_resource_is_refused(field: str) -> None:
    with pytest.raises(batch.BatchError) as raised:
        batch.parse(read([1]) | {field: None}, max_items=10)
    assert raised.value.detail.startswith(f"{field}: Input should be a valid string")
