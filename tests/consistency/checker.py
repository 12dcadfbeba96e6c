"""A consistency checker: concurrent clients record a history; the checker judges it.

The database orders the writes of a row: every write answers with the row's new version
(``ETag``), a deletion with its tombstone's. Every write also sets a unique name, so an
observed row maps to exactly one write. A read is stale when it returns a version older
than the newest one acknowledged before the read started; a row must also look exactly as
the write of its version left it. Reads by xp are judged row by row: a row listed must not
be stale, and a row whose newest acknowledged state has that xp must be listed unless a
write to it was under way during the read.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

Row = tuple[tuple[str, Any], ...]  # a hero as sorted (field, value) pairs; hashable
XPS = (0, 1, 2, 3)  # a few xp values, so that lookups by xp cover many hot rows


def freeze(row: dict[str, Any] | None) -> Row | None:
    return None if row is None else tuple(sorted(row.items()))


@dataclass
class Write:
    key: int
    start: float
    end: float  # math.inf: never acknowledged (failed or timed out): may or may not apply
    value: Row | None  # the row after the write; None: deleted
    version: int  # the row's version after it (0: unknown, for an unacknowledged write)


@dataclass
class Read:
    start: float
    end: float
    keys: tuple[int, ...]  # the keys this read says something about
    observed: dict[int, Row | None]  # by id: the row or None; by xp: rows present
    xp: int | None = None  # set for a read by xp
    version: int = 0  # by id: the ETag (0: absent, read from the database)


@dataclass
class History:
    writes: dict[int, list[Write]] = field(default_factory=lambda: defaultdict(list))
    reads: list[Read] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def allowed(self, key: int, start: float, end: float) -> set[Row | None]:
        """Values a read of ``key`` over [start, end] may return."""
        writes = self.writes[key]
        before = [w for w in writes if w.end < start]
        latest = [w for w in before if not any(o.start > w.end for o in before)]
        concurrent = [w for w in writes if w.start < end and w.end >= start]
        values = {w.value for w in latest + concurrent}
        if not before:
            values.add(None)  # the key may not exist yet
        return values

    def newest_before(self, key: int, start: float) -> Write | None:
        acknowledged = [w for w in self.writes[key] if w.end < start]
        return max(acknowledged, key=lambda w: w.version, default=None)

    def version_of(self, key: int, row: Row) -> int | None:
        """The version of the write that left ``row`` (names are unique per write)."""
        return next((w.version for w in self.writes[key] if w.value == row), None)

    def stale_reads(self) -> list[str]:
        problems = []
        for read in self.reads:
            for key in read.keys:
                newest = self.newest_before(key, read.start)
                floor = newest.version if newest else 0
                if read.xp is None:
                    problems += self._judge_id_read(key, read, newest, floor)
                else:
                    problems += self._judge_xp_read(key, read, newest, floor)
        return problems

    def _judge_id_read(self, key: int, read: Read, newest: Write | None, floor: int) -> list[str]:
        seen = read.observed.get(key)
        if read.version:
            if read.version < floor:
                return [
                    f"GET /heroes/{key} returned version {read.version} ({_show(seen)}) "
                    f"after version {floor} ({_show(newest.value if newest else None)}) "
                    "was acknowledged"
                ]
            left = next((w for w in self.writes[key] if w.version == read.version), None)
            if left is not None and left.value != seen:
                return [
                    f"GET /heroes/{key} version {read.version} is {_show(seen)}, but the "
                    f"write of that version left {_show(left.value)}"
                ]
            return []
        # An absence read from the database: fine unless the row surely existed then.
        if (
            seen is None
            and newest is not None
            and newest.value is not None
            and not any(w.start < read.end and w.end >= read.start for w in self.writes[key])
        ):
            return [f"GET /heroes/{key} said absent; {_show(newest.value)} was acknowledged"]
        return []

    def _judge_xp_read(self, key: int, read: Read, newest: Write | None, floor: int) -> list[str]:
        if key in read.observed:
            row = read.observed[key]
            version = self.version_of(key, row) if row is not None else None
            if version is not None and version < floor:
                return [
                    f"xp={read.xp} listed hero {key} at version {version} ({_show(row)}) "
                    f"after version {floor} was acknowledged"
                ]
            return []
        if newest is None or newest.value is None or dict(newest.value)["xp"] != read.xp:
            return []
        if not any(w.start < read.end and w.end >= read.start for w in self.writes[key]):
            return [f"xp={read.xp} left out hero {key} ({_show(newest.value)})"]
        return []

    def lost_writes(self, database: dict[int, Row | None]) -> list[str]:
        """Every key's final row must be one that the acknowledged writes allow."""
        problems = []
        for key in self.writes:
            allowed = self.allowed(key, math.inf, math.inf) | {
                w.value for w in self.writes[key] if w.end == math.inf
            }
            if database.get(key) not in allowed:
                problems.append(
                    f"hero {key} is {_show(database.get(key))} in the database; "
                    f"acknowledged: {[_show(a) for a in allowed]}"
                )
        return problems


def _version(response: httpx.Response) -> int:
    return int(response.headers.get("etag", '"0"').strip('"'))


def _show(row: Row | None) -> str:
    if row is None:
        return "absent"
    values = dict(row)
    return f"{values['name']}@xp{values['xp']}"


@dataclass
class Workload:
    clients: int = 16
    operations: int = 2000  # in all, across clients
    hot_keys: int = 12
    write_share: float = 0.35
    seed: int = 0


async def run(client: httpx.AsyncClient, workload: Workload) -> History:
    """Create the hot set, then let ``workload.clients`` clients loose on it."""
    history = History()
    counter = iter(range(10**9))
    keys: list[int] = []
    for _ in range(workload.hot_keys):
        await _create(client, history, keys, next(counter), random.Random(0))
    remaining = [workload.operations]

    async def one_client(number: int) -> None:
        rng = random.Random(workload.seed * 1000 + number)
        while remaining[0] > 0:
            remaining[0] -= 1
            try:
                await _operation(client, history, keys, next(counter), rng, workload)
            except httpx.HTTPError as error:
                history.errors.append(f"{type(error).__name__}: {error}")

    await asyncio.gather(*(one_client(n) for n in range(workload.clients)))
    return history


def _hero(marker: int, rng: random.Random) -> dict[str, Any]:
    return {"name": f"w{marker}", "hero": "H", "power": "P", "xp": rng.choice(XPS), "color": "C"}


async def _create(
    client: httpx.AsyncClient, history: History, keys: list[int], marker: int, rng: random.Random
) -> None:
    start = time.monotonic()
    response = await client.post("/heroes", json=_hero(marker, rng))
    end = time.monotonic()
    if response.status_code != 201:
        history.errors.append(f"POST /heroes answered {response.status_code}")
        return
    row = response.json()
    history.writes[row["id"]].append(Write(row["id"], start, end, freeze(row), _version(response)))
    keys.append(row["id"])


async def _operation(
    client: httpx.AsyncClient,
    history: History,
    keys: list[int],
    marker: int,
    rng: random.Random,
    workload: Workload,
) -> None:
    if rng.random() >= workload.write_share:
        if rng.random() < 0.6:
            await _read_id(client, history, rng.choice(keys), rng)
        else:
            await _read_xp(client, history, list(keys), rng.choice(XPS))
        return
    kind = rng.random()
    if kind < 0.1:
        await _create(client, history, keys, marker, rng)
        return
    key = rng.choice(keys)
    start = time.monotonic()
    if kind < 0.2:
        response = await client.delete(f"/heroes/{key}")
        value: Row | None = None
        acknowledged = response.status_code == 204
    else:
        body = _hero(marker, rng)
        if kind < 0.6:
            response = await client.put(f"/heroes/{key}", json=body)
        else:
            response = await client.patch(
                f"/heroes/{key}", json={"name": body["name"], "xp": body["xp"]}
            )
        acknowledged = response.status_code == 200
        value = freeze(response.json()) if acknowledged else None
    end = time.monotonic()
    if acknowledged:
        history.writes[key].append(Write(key, start, end, value, _version(response)))
    elif response.status_code >= 500:
        history.errors.append(f"{response.request.method} answered {response.status_code}")


async def _read_id(
    client: httpx.AsyncClient, history: History, key: int, rng: random.Random
) -> None:
    headers = {"Cache-Control": "no-cache"} if rng.random() < 0.1 else {}
    start = time.monotonic()
    response = await client.get(f"/heroes/{key}", headers=headers)
    end = time.monotonic()
    if response.status_code not in (200, 404):
        history.errors.append(f"GET /heroes/{key} answered {response.status_code}")
        return
    row = response.json() if response.status_code == 200 else None
    history.reads.append(Read(start, end, (key,), {key: freeze(row)}, version=_version(response)))


async def _read_xp(
    client: httpx.AsyncClient, history: History, keys: Iterable[int], xp: int
) -> None:
    known = tuple(keys)  # keys created after this point are judged by creation time anyway
    start = time.monotonic()
    response = await client.get("/heroes", params={"xp": xp, "limit": 1000})
    end = time.monotonic()
    if response.status_code != 200:
        history.errors.append(f"GET /heroes?xp={xp} answered {response.status_code}")
        return
    rows = {row["id"]: freeze(row) for row in orjson.loads(response.content)["items"]}
    history.reads.append(Read(start, end, known, rows, xp=xp))
