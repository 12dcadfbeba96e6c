"""A consistency checker: concurrent clients record a history; the checker judges it.

The database orders the writes of a row: every write answers with the row's new version
(``ETag``), a deletion with its tombstone's. Every write also sets a unique name, so an
observed row maps to exactly one write. A read is stale when it returns a version older
than the newest one acknowledged before the read started; a row must also look exactly as
the write of its version left it. Lists (by xp, and the subject's queries: ranges, sets,
prefixes, pages in an order) are judged row by row: a row listed must not be stale and must
match the query, and a row whose newest acknowledged state matches it, within the page's
span of the order, must be listed unless a write to it was under way during the read.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

Row = tuple[tuple[str, Any], ...]  # a row as sorted (field, value) pairs; hashable
Key = int | str


@dataclass(frozen=True)
class Subject:
    """The resource the checker drives: its path, key, one lookup field and a few of that
    field's values (so that lookups cover many hot rows), and whether clients give keys."""

    path: str
    key: str
    lookup: str
    values: tuple[Any, ...]
    client_keys: bool = False

    def row(self, marker: int, rng: random.Random) -> dict[str, Any]:
        """A row's writable fields (not the key), with a unique name."""
        if self.path == "/heroes":
            return {
                "name": f"w{marker}",
                "hero": "H",
                "power": "P",
                "xp": rng.choice(self.values),
                "color": "C",
            }
        return {
            "name": f"w{marker}",
            self.lookup: rng.choice(self.values),
            "price": 1.5,
            "stock": marker % 7,
        }


@dataclass(frozen=True)
class Question:
    """A list query the clients ask (when the resource declares what it needs): its
    parameters, which rows match it, and the field its pages are in the order of (None: by
    key), descending or not."""

    params: tuple[tuple[str, str], ...]
    matches: Callable[[dict[str, Any]], bool]
    order: str | None = None
    descending: bool = False

    def position(self, row: dict[str, Any], key: str) -> tuple[Any, ...]:
        """Where ``row`` falls in the order of the query's pages (text by its bytes)."""
        values = (row[self.order], row[key]) if self.order else (row[key],)
        return tuple(value.encode() if isinstance(value, str) else value for value in values)


HEROES = Subject("/heroes", "id", "xp", (0, 1, 2, 3))
#: A declared resource with a string key (tests/consistency/products.toml).
PRODUCTS = Subject("/products", "sku", "category", ("a", "b", "c", "d"), client_keys=True)

#: The queries of each subject, where it declares what they need (``QUERIED``).
QUESTIONS: dict[str, tuple[Question, ...]] = {
    "/heroes": (
        Question((("xp[gte]", "1"), ("xp[lte]", "2")), lambda r: 1 <= r["xp"] <= 2, "xp"),
        Question((("name[prefix]", "w1"),), lambda r: r["name"].startswith("w1"), "name"),
        Question((("order", "-xp"),), lambda r: True, "xp", descending=True),
    ),
    "/products": (
        Question((("stock[gte]", "2"), ("stock[lt]", "5")), lambda r: 2 <= r["stock"] < 5, "stock"),
        Question((("category[in]", "a,c"),), lambda r: r["category"] in ("a", "c")),
        Question((("order", "-stock"),), lambda r: True, "stock", descending=True),
    ),
}

#: What the subjects' resources declare for their queries, beside what
#: tests/products.toml declares (a line after each resource's lookups).
QUERIED = {
    'lookups = ["xp"]': 'lookups = ["xp"]\nranges = ["xp"]\nprefixes = ["name"]',
    'lookups = ["category"]': 'lookups = ["category"]\nranges = ["stock"]\nsets = ["category"]',
}


def freeze(row: dict[str, Any] | None) -> Row | None:
    return None if row is None else tuple(sorted(row.items()))


@dataclass
class Write:
    key: Key
    start: float
    # math.inf: never acknowledged (failed or timed out): may or may not apply. A write made
    # beside the API counts as acknowledged only a bound after its commit (the follower's).
    end: float
    value: Row | None  # the row after the write; None: deleted
    version: int  # the row's version after it (0: unknown, for an unacknowledged write)


@dataclass
class Read:
    start: float
    end: float
    keys: tuple[Key, ...]  # the keys this read says something about
    observed: dict[Key, Row | None]  # by key: the row or None; a list: the rows present
    version: int = 0  # by key: the ETag (0: absent, read from the database)
    #: A list: what it asked (for messages), the rows it may list, and those it must list.
    asked: str = ""
    matches: Callable[[dict[str, Any]], bool] | None = None
    within: Callable[[dict[str, Any]], bool] | None = None


@dataclass
class History:
    subject: Subject = HEROES
    writes: dict[Key, list[Write]] = field(default_factory=lambda: defaultdict(list))
    reads: list[Read] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Requests whose connection broke (a server killed under them): a write among them
    #: is recorded as unacknowledged, since it may or may not have committed.
    cut_off: list[str] = field(default_factory=list)

    def allowed(self, key: Key, start: float, end: float) -> set[Row | None]:
        """Values a read of ``key`` over [start, end] may return."""
        writes = self.writes[key]
        before = [w for w in writes if w.end < start]
        latest = [w for w in before if not any(o.start > w.end for o in before)]
        concurrent = [w for w in writes if w.start < end and w.end >= start]
        values = {w.value for w in latest + concurrent}
        if not before:
            values.add(None)  # the key may not exist yet
        return values

    def newest_before(self, key: Key, start: float) -> Write | None:
        acknowledged = [w for w in self.writes[key] if w.end < start]
        return max(acknowledged, key=lambda w: w.version, default=None)

    def version_of(self, key: Key, row: Row) -> int | None:
        """The version of the acknowledged write that left ``row`` (names are unique per
        write); None for a row of an unacknowledged one, whose version nobody was told."""
        return next(
            (w.version for w in self.writes[key] if w.value == row and w.end != math.inf), None
        )

    def stale_reads(self) -> list[str]:
        problems = []
        for read in self.reads:
            for key in read.keys:
                newest = self.newest_before(key, read.start)
                floor = newest.version if newest else 0
                if read.matches is None:
                    problems += self._judge_key_read(key, read, newest, floor)
                else:
                    problems += self._judge_list(key, read, newest, floor)
        return problems

    def _judge_key_read(self, key: Key, read: Read, newest: Write | None, floor: int) -> list[str]:
        path = f"{self.subject.path}/{key}"
        seen = read.observed.get(key)
        if read.version:
            if read.version < floor:
                return [
                    f"GET {path} returned version {read.version} ({self._show(seen)}) "
                    f"after version {floor} ({self._show(newest.value if newest else None)}) "
                    "was acknowledged"
                ]
            left = next((w for w in self.writes[key] if w.version == read.version), None)
            if left is not None and left.value != seen:
                return [
                    f"GET {path} version {read.version} is {self._show(seen)}, but the "
                    f"write of that version left {self._show(left.value)}"
                ]
            return []
        # An absence read from the database: fine unless the row surely existed then.
        if (
            seen is None
            and newest is not None
            and newest.value is not None
            and not any(w.start < read.end and w.end >= read.start for w in self.writes[key])
        ):
            return [f"GET {path} said absent; {self._show(newest.value)} was acknowledged"]
        return []

    def _judge_list(self, key: Key, read: Read, newest: Write | None, floor: int) -> list[str]:
        assert read.matches is not None
        assert read.within is not None
        if key in read.observed:
            row = read.observed[key]
            if row is not None and not read.matches(dict(row)):
                return [f"{read.asked} listed {key} ({self._show(row)}), which it does not ask"]
            version = self.version_of(key, row) if row is not None else None
            if version is not None and version < floor:
                return [
                    f"{read.asked} listed {key} at version {version} ({self._show(row)}) "
                    f"after version {floor} was acknowledged"
                ]
            return []
        if newest is None or newest.value is None or not read.within(dict(newest.value)):
            return []
        if not any(w.start < read.end and w.end >= read.start for w in self.writes[key]):
            return [f"{read.asked} left out {key} ({self._show(newest.value)})"]
        return []

    def lost_writes(self, database: dict[Key, Row | None]) -> list[str]:
        """Every key's final row must be one that the acknowledged writes allow."""
        problems = []
        for key in self.writes:
            final, allowed = database.get(key), self.allowed(key, math.inf, math.inf)
            if final not in allowed and not any(
                _may_have_left(w, final) for w in self.writes[key] if w.end == math.inf
            ):
                problems.append(
                    f"{key} is {self._show(final)} in the database; "
                    f"acknowledged: {[self._show(a) for a in allowed]}"
                )
        return problems

    def _show(self, row: Row | None) -> str:
        if row is None:
            return "absent"
        values = dict(row)
        return f"{values['name']}@{self.subject.lookup}={values[self.subject.lookup]}"


def _may_have_left(write: Write, row: Row | None) -> bool:
    """Whether an unacknowledged write may have left ``row``: its value is what it asked
    for, which for a PATCH is only some of the fields."""
    if write.value is None or row is None:
        return write.value is row
    return set(write.value) <= set(row)


def _version(response: httpx.Response) -> int:
    return int(response.headers.get("etag", '"0"').strip('"'))


@dataclass
class Workload:
    clients: int = 16
    operations: int = 2000  # in all, across clients
    hot_keys: int = 12
    write_share: float = 0.35
    seed: int = 0
    #: The subject's queries are asked too (its resource declares what they need).
    queries: bool = False


#: Writes made beside the API (plain SQL): given the history and the hot keys, they record
#: each of their writes, until the event says the clients are done.
Outsider = Callable[[History, list[Key], asyncio.Event], Coroutine[Any, Any, None]]


async def run(
    client: httpx.AsyncClient,
    workload: Workload,
    subject: Subject = HEROES,
    outsider: Outsider | None = None,
) -> History:
    """Create the hot set, then let ``workload.clients`` clients loose on it (and the
    ``outsider``, if any, beside them)."""
    history = History(subject)
    counter = iter(range(10**9))
    keys: list[Key] = []
    for _ in range(workload.hot_keys):
        await _create(client, history, keys, next(counter), random.Random(0))
    remaining = [workload.operations]
    done = asyncio.Event()
    beside = asyncio.create_task(outsider(history, keys, done)) if outsider else None

    async def one_client(number: int) -> None:
        rng = random.Random(workload.seed * 1000 + number)
        while remaining[0] > 0:
            remaining[0] -= 1
            try:
                await _operation(client, history, keys, next(counter), rng, workload)
            except httpx.TransportError as error:
                history.cut_off.append(f"{type(error).__name__}: {error}")
            except httpx.HTTPError as error:
                history.errors.append(f"{type(error).__name__}: {error}")

    await asyncio.gather(*(one_client(n) for n in range(workload.clients)))
    done.set()
    if beside is not None:
        await beside
    return history


async def _create(
    client: httpx.AsyncClient, history: History, keys: list[Key], marker: int, rng: random.Random
) -> None:
    subject = history.subject
    body = subject.row(marker, rng)
    if subject.client_keys:
        body = {subject.key: f"k{marker}", **body}
    start = time.monotonic()
    response = await client.post(subject.path, json=body)
    end = time.monotonic()
    if response.status_code != 201:
        history.errors.append(f"POST {subject.path} answered {response.status_code}")
        return
    row = response.json()
    key = row[subject.key]
    history.writes[key].append(Write(key, start, end, freeze(row), _version(response)))
    keys.append(key)


async def _operation(
    client: httpx.AsyncClient,
    history: History,
    keys: list[Key],
    marker: int,
    rng: random.Random,
    workload: Workload,
) -> None:
    subject = history.subject
    if rng.random() >= workload.write_share:
        kind = rng.random()
        if kind < 0.5:
            await _read_key(client, history, rng.choice(keys), rng)
        elif kind < 0.75 or not workload.queries:
            await _read_lookup(client, history, list(keys), rng.choice(subject.values))
        else:
            question = rng.choice(QUESTIONS[subject.path])
            await _read_pages(client, history, list(keys), question, rng.choice((3, 1000)))
        return
    kind = rng.random()
    if kind < 0.1:
        await _create(client, history, keys, marker, rng)
        return
    key = rng.choice(keys)
    path = f"{subject.path}/{key}"
    body = subject.row(marker, rng)
    if kind < 0.2:
        method, sent = "DELETE", None
    elif kind < 0.6:  # a client-given key comes back to life by PUT (201); an automatic one 404
        method, sent = "PUT", body
    else:
        method, sent = "PATCH", {"name": body["name"], subject.lookup: body[subject.lookup]}
    start = time.monotonic()
    try:
        response = await client.request(method, path, json=sent)
    except httpx.TransportError:
        # The connection broke (its server killed): the write may or may not have committed.
        asked = None if sent is None else freeze({subject.key: key, **sent})
        history.writes[key].append(Write(key, start, math.inf, asked, 0))
        raise
    end = time.monotonic()
    acknowledged = response.status_code in ((204,) if sent is None else (200, 201))
    value = freeze(response.json()) if acknowledged and sent is not None else None
    if acknowledged:
        history.writes[key].append(Write(key, start, end, value, _version(response)))
    elif response.status_code >= 500:
        history.errors.append(f"{response.request.method} answered {response.status_code}")


async def _read_key(
    client: httpx.AsyncClient, history: History, key: Key, rng: random.Random
) -> None:
    path = f"{history.subject.path}/{key}"
    headers = {"Cache-Control": "no-cache"} if rng.random() < 0.1 else {}
    start = time.monotonic()
    response = await client.get(path, headers=headers)
    end = time.monotonic()
    if response.status_code not in (200, 404):
        history.errors.append(f"GET {path} answered {response.status_code}")
        return
    row = response.json() if response.status_code == 200 else None
    history.reads.append(Read(start, end, (key,), {key: freeze(row)}, version=_version(response)))


async def _read_lookup(
    client: httpx.AsyncClient, history: History, keys: Iterable[Key], value: Any
) -> None:
    subject = history.subject
    known = tuple(keys)  # keys created after this point are judged by creation time anyway
    start = time.monotonic()
    response = await client.get(subject.path, params={subject.lookup: value, "limit": 1000})
    end = time.monotonic()
    if response.status_code != 200:
        history.errors.append(
            f"GET {subject.path}?{subject.lookup}={value} answered {response.status_code}"
        )
        return
    rows = {row[subject.key]: freeze(row) for row in orjson.loads(response.content)["items"]}

    def matches(row: dict[str, Any]) -> bool:
        return bool(row[subject.lookup] == value)

    asked = f"{subject.lookup}={value}"
    history.reads.append(
        Read(start, end, known, rows, asked=asked, matches=matches, within=matches)
    )


async def _read_pages(
    client: httpx.AsyncClient,
    history: History,
    keys: Iterable[Key],
    question: Question,
    limit: int,
) -> None:
    """The first page of ``question`` and, if there is more, the next one: each judged on
    its own, within its span of the order (from where it starts to its last row, or to the
    end on the last page)."""
    subject = history.subject
    known = tuple(keys)
    params = dict(question.params)
    start_after: tuple[Any, ...] | None = None
    for _ in range(2):
        start = time.monotonic()
        response = await client.get(subject.path, params={**params, "limit": limit})
        end = time.monotonic()
        asked = f"{subject.path}?{'&'.join(f'{k}={v}' for k, v in question.params)}"
        if response.status_code != 200:
            history.errors.append(f"GET {asked} answered {response.status_code}")
            return
        page = orjson.loads(response.content)
        rows = {row[subject.key]: freeze(row) for row in page["items"]}
        last = question.position(page["items"][-1], subject.key) if page["next_after"] else None

        def within(
            row: dict[str, Any],
            begin: tuple[Any, ...] | None = start_after,
            stop: tuple[Any, ...] | None = last,
        ) -> bool:
            if not question.matches(row):
                return False
            at = question.position(row, subject.key)
            if question.descending:
                return (begin is None or at < begin) and (stop is None or at >= stop)
            return (begin is None or at > begin) and (stop is None or at <= stop)

        history.reads.append(
            Read(start, end, known, rows, asked=asked, matches=question.matches, within=within)
        )
        if last is None:
            return
        start_after, params = last, {**params, "after": page["next_after"]}
