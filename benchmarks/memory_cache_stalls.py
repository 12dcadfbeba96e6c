"""The in-process cache's worst single write, at the size it is bounded to: the mean and the
longest ``MemoryCache.store`` over a run of new keys (each evicting the least recently used
entry) and of replacements (each keeping the entry count), as the near-cache (100,000
entries) and the embedded default (600,000 at 256 MiB of hero rows) see them.

    .venv/bin/python benchmarks/memory_cache_stalls.py

Another tree (an earlier commit) is measured the same way with PYTHONPATH=<tree>/src. The
longest write is a stall of the whole event loop: every request in flight waits for it.
"""

from __future__ import annotations

import random
import sys
import time

from twotier.cache.base import Entry
from twotier.cache.memory import MemoryCache

BODY = b'{"id":1,"name":"Ada","hero":"Captain Ada","power":"math","xp":5,"color":"blue"}'


def ttl(rng: random.Random) -> float:
    return 300.0 * (0.9 + 0.2 * rng.random())  # the policy's jitter around its TTL


def measure(size: int) -> dict[str, tuple[float, float]]:
    """(mean µs, longest ms) of each kind of write, over twice ``size`` writes each."""
    rng = random.Random(1)
    cache = MemoryCache(max_entries=size, max_bytes=2**40)
    for number in range(size):
        cache.store(f"ns:heroes:{number}", Entry(1, BODY), ttl(rng))
    figures: dict[str, tuple[float, float]] = {}
    for kind in ("new keys", "replacements"):
        total = longest = 0.0
        for number in range(size, 3 * size):
            if kind == "new keys":
                key = f"ns:heroes:{number}"
            else:
                key = f"ns:heroes:{3 * size - 1 - rng.randrange(size)}"
            started = time.perf_counter()
            cache.store(key, Entry(2, BODY), ttl(rng))
            took = time.perf_counter() - started
            total += took
            longest = max(longest, took)
        figures[kind] = (total / (2 * size) * 1e6, longest * 1e3)
    return figures


def main() -> None:
    for size in (100_000, 600_000):
        for kind, (mean, longest) in measure(size).items():
            print(f"{size:>7,} entries, {kind:>12}: mean {mean:.2f} us, longest {longest:.2f} ms")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
