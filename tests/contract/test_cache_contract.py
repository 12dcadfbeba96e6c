"""The cache contract: the in-process LRU and Redis behave the same, for real."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator
from typing import cast

import pytest
import redis.asyncio as aioredis

from tests.conftest import CACHES, make_cache
from twotier.cache.base import Cache, CacheServer, Entry
from twotier.cache.memory import _SWEEP_BUDGET, MemoryCache, _tick
from twotier.cache.redis import RedisCache
from twotier.errors import CacheUnavailable


@pytest.fixture(params=[*CACHES, "resilient-redis"])
def cache_kind(request: pytest.FixtureRequest) -> str:
    """Every adapter, and the policy's decorator (``ResilientCache``): a cache as well."""
    return str(request.param)


async def test_get_of_a_missing_key_is_none(cache: Cache) -> None:
    assert await cache.get("nothing") is None
    assert await cache.get_many(["a", "b"]) == [None, None]
    assert await cache.get_many([]) == []


async def test_put_if_newer_only_moves_forward(cache: Cache) -> None:
    assert await cache.put_if_newer("k", Entry(2, b'{"v":2}'), 60)
    assert not await cache.put_if_newer("k", Entry(1, b'{"v":1}'), 60)  # older
    assert not await cache.put_if_newer("k", Entry(2, b'{"other":2}'), 60)  # same version
    assert await cache.get("k") == Entry(2, b'{"v":2}')
    assert await cache.put_if_newer("k", Entry(3, b""), 60)  # a tombstone is a version too
    got = await cache.get("k")
    assert got == Entry(3, b"")
    assert got.absent


async def test_bodies_are_kept_byte_for_byte(cache: Cache) -> None:
    body = '{"name":"🦸 | pipe | ","x":"\\u0000"}'.encode() + bytes(range(256))
    await cache.put_if_newer("bytes", Entry(7, body), 60)
    assert await cache.get("bytes") == Entry(7, body)
    assert await cache.get_many(["bytes", "none"]) == [Entry(7, body), None]


async def test_entries_expire(cache: Cache) -> None:
    await cache.put_if_newer("short", Entry(1, b"x"), 0.05)
    await cache.put_if_newer("long", Entry(1, b"y"), 60)
    await asyncio.sleep(0.2)
    assert await cache.get("short") is None
    assert await cache.get("long") == Entry(1, b"y")
    # An expired entry no longer blocks older versions: expiry forgets everything.
    assert await cache.put_if_newer("short", Entry(0, b"z"), 60)


async def one(cache: Cache, candidate: int) -> tuple[Entry | None, int]:
    [found] = await cache.get_with_generations([("{gen}:list", "{gen}")], [candidate], 60)
    return found


async def test_generations_file_entries(cache: Cache) -> None:
    assert await one(cache, 111) == (None, 111)
    # A second reader sees the generation the first one set, not its own candidate.
    assert (await one(cache, 222))[1] == 111

    assert await cache.put_if_generations("{gen}:list", {"{gen}": 111}, Entry(111, b"page"), 60)
    assert await one(cache, 333) == (Entry(111, b"page"), 111)

    await cache.set_generations({"{gen}": 444, "other": 5}, 60)
    entry, generation = await one(cache, 555)
    assert generation == 444
    assert entry == Entry(111, b"page")  # stale: filed under 111
    # A fill that read the database under the old generation is refused.
    assert not await cache.put_if_generations(
        "{gen}:list", {"{gen}": 111}, Entry(111, b"stale"), 60
    )
    # Generations are large random numbers; they must compare exactly.
    big = 2**62 - 1
    await cache.set_generations({"{gen}": big}, 60)
    assert not await cache.put_if_generations(
        "{gen}:list", {"{gen}": big - 1}, Entry(big - 1, b"x"), 60
    )
    assert await cache.put_if_generations("{gen}:list", {"{gen}": big}, Entry(big, b"x"), 60)


async def test_many_generations_in_one_call(cache: Cache) -> None:
    await cache.set_generations({"{g2}": 22}, 60)
    await cache.put_if_generations("{g2}:k2", {"{g2}": 22}, Entry(22, b"two"), 60)
    found = await cache.get_with_generations(
        [("k1", "g1"), ("{g2}:k2", "{g2}"), ("k3", "g3")], [11, 99, 33], 60
    )
    assert found == [(None, 11), (Entry(22, b"two"), 22), (None, 33)]
    assert await cache.get_with_generations([], [], 60) == []


async def test_an_entry_filed_under_several_generations(cache: Cache) -> None:
    pairs = [("{t}:page", "{t}:a"), ("{t}:page", "{t}:b")]
    [(_, a), (_, b)] = await cache.get_with_generations(pairs, [11, 12], 60)
    assert (a, b) == (11, 12)
    assert await cache.put_if_generations("{t}:page", {"{t}:a": a, "{t}:b": b}, Entry(7, b"p"), 60)
    assert await cache.get_with_generations(pairs, [0, 0], 60) == [
        (Entry(7, b"p"), 11),
        (Entry(7, b"p"), 12),
    ]
    # One of them moved: a fill from before it is refused, whichever it is.
    await cache.set_generations({"{t}:b": 13}, 60)
    assert not await cache.put_if_generations(
        "{t}:page", {"{t}:a": 11, "{t}:b": 12}, Entry(8, b"stale"), 60
    )
    assert (await cache.get("{t}:page")) == Entry(7, b"p")


async def test_a_write_through_drops_generations(cache: Cache) -> None:
    [(_, generation)] = await cache.get_with_generations([("{t}:page", "{t}:n")], [5], 60)
    assert generation == 5
    assert await cache.put_if_generations("{t}:page", {"{t}:n": 5}, Entry(5, b"p"), 60)
    await cache.write([("row", Entry(1, b"r"), 60)], {}, 60, ["{t}:n", "{t}:never-made"])
    # Dropped: the next reader makes it anew, so what was filed under it misses, and a
    # fill from before the drop is refused.
    assert not await cache.put_if_generations("{t}:page", {"{t}:n": 5}, Entry(5, b"late"), 60)
    [(entry, made)] = await cache.get_with_generations([("{t}:page", "{t}:n")], [6], 60)
    assert (entry, made) == (Entry(5, b"p"), 6)  # held, but filed under a generation gone
    assert await cache.get("{t}:never-made") is None  # a drop makes nothing


async def test_put_many_if_newer(cache: Cache) -> None:
    await cache.put_if_newer("b", Entry(5, b"old-but-newer"), 60)
    await cache.put_many_if_newer(
        [("a", Entry(1, b"a1"), 60), ("b", Entry(2, b"b2"), 60), ("c", Entry(1, b""), 60)]
    )
    assert await cache.get_many(["a", "b", "c"]) == [
        Entry(1, b"a1"),
        Entry(5, b"old-but-newer"),
        Entry(1, b""),
    ]
    await cache.put_many_if_newer([])


async def test_put_if_generation_needs_the_generation_to_exist(cache: Cache) -> None:
    assert not await cache.put_if_generations(
        "{missing-gen}:list", {"{missing-gen}": 1}, Entry(1, b"x"), 60
    )
    assert await cache.get("{missing-gen}:list") is None


async def test_delete_and_clear(cache: Cache) -> None:
    for key in ("a", "b", "c"):
        await cache.put_if_newer(key, Entry(1, key.encode()), 60)
    await cache.delete(["a", "nothing"])
    await cache.delete([])
    assert await cache.get_many(["a", "b"]) == [None, Entry(1, b"b")]
    await cache.clear()
    assert await cache.get_many(["b", "c"]) == [None, None]


async def test_delete_and_clear_reach_every_shard(cache: Cache) -> None:
    """Keys over every slot range (on a cluster: every primary), deleted together across
    slots, then the rest cleared: nothing of the namespace is left on any node."""
    keys = [f"spread-{n}" for n in range(60)]
    for n, key in enumerate(keys):
        await cache.put_if_newer(key, Entry(n + 1, b"x"), 60)
    await cache.delete(keys[:30])
    assert await cache.get_many(keys[:30]) == [None] * 30
    assert None not in await cache.get_many(keys[30:])
    await cache.clear()
    assert await cache.get_many(keys) == [None] * 60


async def test_concurrent_conditional_writes_keep_the_newest(cache: Cache) -> None:
    versions = list(range(1, 201))
    random.Random(4).shuffle(versions)
    await asyncio.gather(*(cache.put_if_newer("race", Entry(v, b"v%d" % v), 60) for v in versions))
    assert await cache.get("race") == Entry(200, b"v200")


async def test_ping(cache: Cache) -> None:
    await cache.ping()  # answers
    dead = RedisCache("redis://127.0.0.1:1/0", namespace="dead", timeout=0.2)
    try:
        with pytest.raises(CacheUnavailable):
            await dead.ping()
    finally:
        await dead.close()


async def test_redis_namespaces_are_isolated() -> None:
    first, second = await make_cache("redis"), await make_cache("redis")
    try:
        await first.put_if_newer("k", Entry(1, b"first"), 60)
        assert await second.get("k") is None
        await second.clear()
        assert await first.get("k") == Entry(1, b"first")
    finally:
        for made in (first, second):
            await made.clear()
            await made.close()


async def test_memory_cache_is_a_bounded_lru() -> None:
    cache = MemoryCache(max_entries=3)
    for key in ("a", "b", "c"):
        await cache.put_if_newer(key, Entry(1, b"x"), 60)
    await cache.get("a")  # a is now the most recently used
    await cache.put_if_newer("d", Entry(1, b"x"), 60)
    assert len(cache) == 3
    assert await cache.get("b") is None
    assert all(await cache.get_many(["a", "c", "d"]))


async def test_memory_cache_items_are_invisible_to_the_garbage_collector() -> None:
    import gc

    cache = MemoryCache()
    await cache.put_if_newer("k", Entry(1, b"body"), 60)
    gc.collect()
    # A cache of a million entries must not lengthen collections (tail latency): neither
    # its items nor its expiry index's sets of keys are the collector's to walk.
    assert not gc.is_tracked(cache._items["k"])
    assert not any(gc.is_tracked(keys) for keys in cache._expiring.values())


async def test_memory_cache_is_bounded_in_bytes() -> None:
    from twotier.cache.memory import entry_size

    page = b"x" * 90_000  # a list page of about a thousand rows
    cache = MemoryCache(max_entries=1_000_000, max_bytes=1024 * 1024)
    for after in range(40):  # 3.6 MB of distinct pages
        await cache.put_if_newer(f"heroes?after={after}", Entry(1, page), 60)
        assert cache.bytes_held <= cache.max_bytes
    assert cache.bytes_held == len(cache) * entry_size("heroes?after=10", page)
    # Least recently used went first: the newest pages are the ones held.
    assert await cache.get("heroes?after=39") is not None
    assert await cache.get("heroes?after=0") is None
    assert cache.gauges() == {
        "memory_cache_entries": len(cache),
        "memory_cache_bytes": cache.bytes_held,
    }
    for key in list(cache._items):
        cache.forget([key])
    assert (len(cache), cache.bytes_held) == (0, 0)


async def test_an_entry_too_large_to_keep_drops_the_older_version() -> None:
    cache = MemoryCache(max_bytes=1024 * 1024)
    assert await cache.put_if_newer("k", Entry(1, b"small"), 60)
    # Larger than an eighth of the bound: not kept, and the older version must not stay.
    assert not await cache.put_if_newer("k", Entry(2, b"x" * 200_000), 60)
    assert await cache.get("k") is None
    assert cache.bytes_held == 0


async def test_expired_entries_leave_without_being_read() -> None:
    cache = MemoryCache()
    for number in range(100):
        await cache.put_if_newer(f"short:{number}", Entry(1, b"x" * 1000), 0.05)
    assert len(cache) == 100
    # Nobody reads them again: the timed sweep drops them.
    for _ in range(100):
        if not len(cache):
            break
        await asyncio.sleep(0.05)
    assert (len(cache), cache.bytes_held) == (0, 0)
    await cache.close()


def test_writes_sweep_expired_entries_without_an_event_loop() -> None:
    import time

    cache = MemoryCache()
    for number in range(10):
        cache.store(f"short:{number}", Entry(1, b"x"), 0.01)
    time.sleep(0.1)  # past the sixteenth of a second they expire in
    cache.store("new", Entry(1, b"x"), 60)
    assert list(cache._items) == ["new"]


def expiry_index(cache: MemoryCache) -> dict[str, int]:
    """The cache's expiry index as key -> tick, checked to file each key once and each tick
    once."""
    filed = [(key, tick) for tick, keys in cache._expiring.items() for key in keys]
    assert len(dict(filed)) == len(filed)
    assert sorted(cache._ticks) == sorted(cache._expiring)
    return dict(filed)


def held(cache: MemoryCache) -> dict[str, int]:
    return {key: _tick(item[0]) for key, item in cache._items.items()}


async def test_the_expiry_index_holds_exactly_the_entries_held() -> None:
    # Replaced, evicted (by count and by bytes), forgotten and expired entries all leave the
    # index at once: nothing is left for a clean-up in bulk (a heap of expiries needed one,
    # and rebuilding it stalled a write for up to 553 ms at 600,000 entries).
    rng = random.Random(7)
    cache = MemoryCache(max_entries=500, max_bytes=1024 * 1024)
    for step in range(20_000):
        key = f"k:{rng.randrange(2_000)}"
        action = rng.random()
        if action < 0.6:
            size = rng.choice((10, 100, 5_000))
            cache.store(key, Entry(step, b"x" * size), rng.choice((0.001, 60, 600)))
        elif action < 0.7:
            cache.forget([key])
        elif action < 0.8:
            await cache.set_generations({key: step}, 600)
        else:
            await cache.get(key)  # drops it if expired
        if step % 1_000 == 0:
            assert expiry_index(cache) == held(cache)
    assert expiry_index(cache) == held(cache)
    cache.forget_all()
    assert (expiry_index(cache), cache._ticks) == ({}, [])


async def test_replaced_entries_stay_filed_once() -> None:
    cache = MemoryCache()
    for version in range(1, 20_000):
        await cache.set_generations({"gen:heroes": version}, 600)
    assert len(cache) == 1
    assert expiry_index(cache) == held(cache)


async def test_a_mass_expiry_is_dropped_in_bounded_sweeps_one_after_another() -> None:
    cache = MemoryCache()
    for number in range(3 * _SWEEP_BUDGET):
        cache.store(f"short:{number}", Entry(1, b"x"), 0.01)
    # No timed sweep meanwhile: on a slow machine the stores alone outlast its interval.
    assert cache._sweeper is not None
    cache._sweeper.cancel()
    cache._sweeper = asyncio.get_running_loop().call_later(60, cache._timed_sweep)
    await asyncio.sleep(0.1)  # every one expired
    # A write drops at most a budget of them: no call stalls on a mass expiry.
    cache.store("new", Entry(1, b"x"), 60)
    assert len(cache) == 1 + 2 * _SWEEP_BUDGET
    # The timer's sweep drops as much again, and comes back at once for the rest.
    assert cache._sweeper is not None
    cache._sweeper.cancel()
    cache._timed_sweep()
    assert len(cache) == 1 + _SWEEP_BUDGET
    assert cache._sweeper is not None
    assert cache._sweeper.when() <= asyncio.get_running_loop().time()
    for _ in range(10):
        await asyncio.sleep(0)
    assert list(cache._items) == ["new"]
    assert expiry_index(cache) == held(cache)
    await cache.close()


async def test_a_write_through_stores_newer_values_and_moves_generations(cache: Cache) -> None:
    await cache.put_if_newer("old", Entry(5, b"five"), 60)
    [(_, generation)] = await cache.get_with_generations([("{gen}:list", "{gen}")], [1], 60)
    assert await cache.put_if_generations(
        "{gen}:list", {"{gen}": generation}, Entry(generation, b"page"), 60
    )
    stored = await cache.write(
        [("new", Entry(1, b"one"), 60), ("old", Entry(4, b"four"), 60)], {"{gen}": 2}, 60
    )
    assert stored == [True, False]  # the older version lost to what the cache holds
    assert await cache.get_many(["new", "old"]) == [Entry(1, b"one"), Entry(5, b"five")]
    [(entry, generation)] = await cache.get_with_generations([("{gen}:list", "{gen}")], [3], 60)
    assert generation == 2
    assert entry is None or entry.version != generation  # the page filed before: a miss


async def test_concurrent_write_throughs_each_get_their_own_answers(cache: Cache) -> None:
    """Write-throughs made at once (Redis sends them in one pipeline): each is told which
    of its own entries were stored, and every generation moved."""
    await cache.put_if_newer("b", Entry(9, b"nine"), 60)
    answers = await asyncio.gather(
        cache.write([("a", Entry(1, b"A"), 60)], {"g1": 11}, 60),
        cache.write([("b", Entry(2, b"B"), 60), ("c", Entry(3, b"C"), 60)], {}, 60),
        cache.write([], {"g2": 22, "g3": 33}, 60),
        cache.write([("d", Entry(4, b"D"), 60)], {"g1": 44}, 60),
    )
    assert list(answers) == [[True], [False, True], [], [True]]
    assert await cache.get_many(["a", "b", "c", "d"]) == [
        Entry(1, b"A"),
        Entry(9, b"nine"),
        Entry(3, b"C"),
        Entry(4, b"D"),
    ]
    found = await cache.get_with_generations([("x", "g1"), ("y", "g2"), ("z", "g3")], [0] * 3, 60)
    # g1, moved by two of them, holds the last one's (on Redis, one SET for the pair)
    assert [generation for _, generation in found] == [44, 22, 33]


async def test_redis_scripts_lost_by_the_server_are_loaded_again() -> None:
    """Pipelines send EVALSHA without asking SCRIPT EXISTS first: a Redis that lost its
    scripts (a restart, SCRIPT FLUSH) answers NOSCRIPT, and the cache loads them and
    runs the pipeline again."""
    cache = await make_cache("redis")
    assert isinstance(cache, RedisCache)
    try:
        await cache._redis.script_flush()
        stored = await cache.put_many_if_newer(
            [("a", Entry(2, b"A"), 60), ("b", Entry(3, b"B"), 60)]
        )
        assert stored == [True, True]
        assert await cache.put_many_if_newer([("a", Entry(1, b"old"), 60)]) == [False]
        await cache._redis.script_flush()
        assert await cache.write([("a", Entry(4, b"A4"), 60)], {"{gen}": 9}, 60) == [True]
        assert await cache.get_many(["a", "b"]) == [Entry(4, b"A4"), Entry(3, b"B")]
    finally:
        await cache.clear()
        await cache.close()


async def test_a_lease_has_one_holder_until_it_lapses(cache: CacheServer) -> None:
    if not hasattr(cache, "hold"):
        pytest.skip("the follower's state is the adapters', never the policy's decorator's")
    assert await cache.hold("lease", "a", 0.3)
    assert await cache.hold("lease", "a", 0.3)  # renewed by its holder
    assert not await cache.hold("lease", "b", 0.3)
    await asyncio.sleep(0.5)  # lapsed: anyone may take it
    assert await cache.hold("lease", "b", 0.3)
    assert not await cache.hold("lease", "a", 0.3)
    await cache.clear()  # a clear drops it too
    assert await cache.hold("lease", "a", 0.3)


async def test_a_subscription_that_breaks_for_any_reason_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not only a lost link: any error reading a subscription ends ``messages()`` (the
    near-cache then empties itself and subscribes again), never a listener left waiting."""
    cache = await make_cache("redis")
    assert isinstance(cache, RedisCache)
    messages = cast(AsyncGenerator[str | None, None], cache.messages())
    try:
        assert await anext(messages) is None  # subscribed

        async def broken(*args: object, **kwargs: object) -> None:
            raise ValueError("a bug in reading")

        monkeypatch.setattr(aioredis.client.PubSub, "get_message", broken)
        with pytest.raises(ValueError, match="a bug in reading"):
            await asyncio.wait_for(anext(messages), 10)
    finally:
        await messages.aclose()
        await cache.close()
