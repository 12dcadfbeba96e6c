"""The near-cache over Redis: coherent across processes, bounded in staleness."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.conftest import make_cache, redis_namespace
from twotier.cache.base import Entry
from twotier.cache.invalidations import joined
from twotier.cache.near import NearCache


@pytest.fixture(params=["near", "near-cluster"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[NearCache, NearCache]]:
    """Two near-caches on one namespace: two processes of one deployment (over one Redis,
    or a Redis Cluster)."""
    namespace = redis_namespace()
    first = await make_cache(request.param, namespace)
    second = await make_cache(request.param, namespace)
    assert isinstance(first, NearCache)
    assert isinstance(second, NearCache)
    try:
        yield first, second
    finally:
        await first.clear()
        await first.close()
        await second.close()


async def until(condition: object, limit: float = 3.0) -> float:
    """Seconds until ``condition()`` holds (fails past ``limit`` seconds)."""
    started = time.perf_counter()
    while not condition():  # type: ignore[operator]
        if time.perf_counter() - started > limit:
            pytest.fail("condition not met in time")
        await asyncio.sleep(0.0005)
    return time.perf_counter() - started


async def test_reads_are_served_from_the_local_copy(pair: tuple[NearCache, NearCache]) -> None:
    first, _ = pair
    await first.put_if_newer("k", Entry(1, b"one"), 60)
    assert await first.local.get("k") == Entry(1, b"one")  # own write: local at once
    await first.shared.delete(["k"])  # behind its back: the local copy still answers
    assert await first.get("k") == Entry(1, b"one")


async def test_a_write_elsewhere_invalidates_within_milliseconds(
    pair: tuple[NearCache, NearCache],
) -> None:
    first, second = pair
    await second.put_if_newer("k", Entry(1, b"one"), 60)
    assert await first.get("k") == Entry(1, b"one")
    assert await first.local.get("k") is not None

    delays = []
    for version in range(2, 22):
        await second.write([("k", Entry(version, b"v%d" % version), 60)], {}, 60)  # tells
        delays.append(await until(lambda: first.local._items.get("k") is None))
        assert await first.get("k") == Entry(version, b"v%d" % version)
    delays.sort()
    print(f"invalidation delay: median {delays[10] * 1000:.2f} ms, max {delays[-1] * 1000:.2f} ms")


async def test_own_writes_are_visible_at_once_and_not_self_invalidated(
    pair: tuple[NearCache, NearCache],
) -> None:
    first, second = pair
    await first.write([("a", Entry(1, b"a"), 60), ("b", Entry(1, b"b"), 60)], {}, 60)
    await asyncio.sleep(0.05)  # our own message came back and was ignored
    assert await first.local.get_many(["a", "b"]) == [Entry(1, b"a"), Entry(1, b"b")]
    assert await second.get("a") == Entry(1, b"a")  # the other process reads it from Redis


async def test_an_older_write_is_not_kept_locally(pair: tuple[NearCache, NearCache]) -> None:
    first, second = pair
    await second.put_if_newer("k", Entry(5, b"five"), 60)
    assert not await first.put_if_newer("k", Entry(4, b"four"), 60)
    assert await first.local.get("k") is None
    assert await first.get("k") == Entry(5, b"five")


async def test_a_fill_that_raced_an_invalidation_is_not_kept(
    pair: tuple[NearCache, NearCache],
) -> None:
    first, second = pair
    await second.put_if_newer("k", Entry(1, b"one"), 60)
    original = first.shared.get

    async def slow_get(key: str) -> Entry | None:
        entry = await original(key)  # reads v1 ...
        await second.write([("k", Entry(2, b"two"), 60)], {}, 60)  # ... meanwhile v2 is written
        await until(lambda: first._epoch > epoch)
        return entry

    epoch = first._epoch
    first.shared.get = slow_get  # type: ignore[method-assign]
    assert await first.get("k") == Entry(1, b"one")  # a read concurrent with the write
    first.shared.get = original  # type: ignore[method-assign]
    assert await first.local.get("k") is None  # ... but v1 was not kept
    assert await first.get("k") == Entry(2, b"two")


async def test_clear_reaches_every_process(pair: tuple[NearCache, NearCache]) -> None:
    first, second = pair
    await second.put_if_newer("k", Entry(1, b"one"), 60)
    await first.get("k")
    await second.clear()
    await until(lambda: not first.local._items)
    assert await first.get("k") is None


async def test_generations_are_kept_locally_and_moved_everywhere(
    pair: tuple[NearCache, NearCache],
) -> None:
    first, second = pair
    [(entry, generation)] = await first.get_with_generations([("{gen}:list", "{gen}")], [7], 60)
    assert (entry, generation) == (None, 7)
    assert await first.put_if_generations("{gen}:list", {"{gen}": 7}, Entry(7, b"page"), 60)
    await first.shared.delete(["{gen}:list"])  # behind its back: the local copy still answers
    assert await first.get_with_generations([("{gen}:list", "{gen}")], [8], 60) == [
        (Entry(7, b"page"), 7)
    ]

    # Another process moves the generation: the local one is dropped, the entry goes stale.
    await second.set_generations({"{gen}": 9}, 60)  # and tells the others
    await until(lambda: first.local._items.get("{gen}") is None)
    [(entry, generation)] = await first.get_with_generations([("{gen}:list", "{gen}")], [10], 60)
    assert generation == 9
    assert entry is None or entry.version != generation  # a miss, never the old page


@pytest.mark.parametrize("racing", ["put_if_generations", "get_with_generations"])
async def test_a_generation_fill_that_raced_an_own_move_is_not_kept(
    pair: tuple[NearCache, NearCache], racing: str
) -> None:
    """A fill that read generation 7 from the shared cache, while a write in this same
    process moved it to 8 before the fill got to keep it locally: L1 must not go back to
    7 (its page would then be served until L1's TTL)."""
    first, _ = pair
    await first.shared.set_generations({"{gen}": 7}, 60)
    await first.shared.put_if_generations("{gen}:list", {"{gen}": 7}, Entry(7, b"old page"), 60)
    original = getattr(first.shared, racing)

    async def racing_write(*args: object) -> object:
        answer = await original(*args)  # the shared cache answers under generation 7 ...
        await first.write([], {"{gen}": 8}, 60)  # ... and this process moves it to 8
        return answer

    setattr(first.shared, racing, racing_write)
    if racing == "put_if_generations":
        assert await first.put_if_generations("{gen}:list", {"{gen}": 7}, Entry(7, b"old page"), 60)
    else:
        [(entry, _)] = await first.get_with_generations([("{gen}:list", "{gen}")], [9], 60)
        assert entry == Entry(7, b"old page")  # read before the move: a fine answer
    setattr(first.shared, racing, original)
    assert await first.local.get("{gen}") == Entry(8, b"")
    [(entry, generation)] = await first.get_with_generations([("{gen}:list", "{gen}")], [9], 60)
    assert generation == 8
    assert entry is None or entry.version != generation  # a miss, never the old page


async def test_writes_of_one_loop_turn_tell_the_others_in_one_message(
    pair: tuple[NearCache, NearCache],
) -> None:
    """The write-throughs of one loop turn go as one pipeline with one message for all of
    them (``invalidations.joined``): every key and generation they changed is dropped elsewhere."""
    first, second = pair
    keys = [f"w{i}" for i in range(5)]
    await first.write([(key, Entry(1, b"old"), 60) for key in keys], {"{g}": 1}, 60)
    assert await second.get_many(keys) == [Entry(1, b"old")] * 5
    await second.get_with_generations([("{g}:list", "{g}")], [0], 60)
    assert await second.local.get("{g}") is not None
    await asyncio.gather(
        *(
            first.write([(key, Entry(2, b"new"), 60)], {"{g}": 2 + i}, 60)
            for i, key in enumerate(keys)
        )
    )
    await until(lambda: all(second.local._items.get(key) is None for key in [*keys, "{g}"]))
    assert await second.get_many(keys) == [Entry(2, b"new")] * 5


def test_joined_messages_read_as_the_keys_they_name() -> None:
    """One sender's messages joined read as all their keys, by the same parsing (a process
    of an older version reads them right too); senders stay apart; everything wins."""
    assert joined(["s\na\nb", "s\nc", "t\nd"]) == ["s\na\nb\nc", "t\nd"]
    assert joined(["s\na", "s\n*", "s\nb"]) == ["s\n*"]
    assert joined(["s\na"]) == ["s\na"]
