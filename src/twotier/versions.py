"""Row versions: what makes every cache write safe, and where a row's count starts.

A row's version grows by one with each update, and a deletion leaves a tombstone at the
last version plus one; the cache only ever replaces an entry by a newer version.

A row is *born* (created, or loaded in bulk) with a version read from the clock, in
microseconds, not at 1. A key can come back after a deletion (a client-given key, an id
some database hands out again, a reloaded data set), and the tombstone of the row that
held it may still be cached: a new row born at 1 would lose to it and read as absent. Born
from the clock, it starts above every version the old row reached, unless that row was
updated more than once a microsecond over its whole life, or the clocks of two hosts
disagree by more than the time between the deletion and the new row.

Microseconds since 1970 stay below 2**53 until the year 2255, so Lua's numbers in Redis
compare them exactly.
"""

from __future__ import annotations

import time

_last = 0


def birth_version() -> int:
    """The version of a row created (or loaded) now: the clock in microseconds, and always
    above the last one this process gave (the clock may step back)."""
    global _last
    _last = max(time.time_ns() // 1000, _last + 1)
    return _last
