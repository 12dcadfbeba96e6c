"""The caching policy of one resource: the one place that knows both tiers.

Reads are lazy (cache-aside): a hit returns the cached JSON bytes as they are; a miss asks
the database once per key per process (single-flight) and fills the cache with a jittered
TTL. Absent rows are cached briefly too (negative caching).

Writes go through: the database commits first, then the cache gets the new value (or a
tombstone). Every row has a version that grows with each write, and the cache only ever
replaces an entry by a newer version, atomically on the cache server. So a slow fill that
read an old row can never overwrite the value a later write put there; and a fill too slow
to be sure that value is still there to compare with (``Tuning.fill_window``) is answered
but not stored.

Lookups (each value of a declared lookup field: all its rows, as one entry) and list pages
are filed under generations: the value's own for a lookup, or for a list that filters on a
lookup field; on the SQL stores, a list's others under the values it asks of a ``sets``
field or the nodes of its range (``spans``); on DynamoDB, one generation for all of them. A
write gives the generations it touches (the row's old and new values of each lookup field,
and the resource's lists) new random values, and drops those of its old and new values'
nodes and sets; an entry is a hit only if it was filled under the current generations, and
a fill is stored only if none has moved since the fill read the database.

One read-through holds every read: ``read`` for one row, ``_through`` for many entries
(rows by key, and generation-filed ones: lookups and pages), as dogpile.cache's
``get_or_create`` and ``get_or_create_multi``. The cache is a ``ResilientCache``: a cache
that keeps the real one from ever being a point of failure, so the policy holds only the
caching rules.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

import orjson

from twotier import spans
from twotier.batching import TickBatcher
from twotier.cache.base import Entry
from twotier.cache.resilient import (
    ResilientCache,
    moved_within,
    new_generation,
    written_generation,
)
from twotier.errors import AnswerTooLarge, CacheUnavailable
from twotier.pages import Cursors, page_after
from twotier.resources import Key, Record, Resource, to_json
from twotier.singleflight import SingleFlight
from twotier.store.base import LoadRows, Query, Rows
from twotier.telemetry import Outcomes

#: What a read-through finds of one entry: its flight (the entry's name, with the
#: generation it is filed under), the entry if the cache holds a valid one, what a fill
#: of it needs.
Found = tuple[str, Entry | None, Any]


#: Where a generation-filed entry is filled: its name, the names of the generations it is
#: filed under and their values before the database was read, and its version
#: (``combined``). A plain tuple: a cached batch read makes one a value.
Filing = tuple[str, tuple[str, ...], tuple[int, ...], int]


class Outcome(StrEnum):
    """How a read was served, as reported in the ``X-Cache`` header."""

    HIT = "HIT"
    MISS = "MISS"
    BYPASS = "BYPASS"


class Served(NamedTuple):
    """A read's answer: the JSON body (None: no such row), how it was served, and for a
    single row its version (0 where unknown: lists, or an absence read from the database).
    A named tuple, as ``Entry`` is: every read makes one."""

    body: bytes | None
    outcome: Outcome
    version: int = 0


@dataclass(frozen=True, slots=True)
class Tuning:
    ttl: float = 300.0
    jitter: float = 0.1
    negative_ttl: float = 30.0

    @property
    def generation_ttl(self) -> float:
        # A generation must outlive the entries filed under it (if it does not, they miss).
        return 2 * self.ttl

    @property
    def fill_window(self) -> float:
        """Seconds from the start of a fill's database read within which its rows may be
        stored. The version check keeps a fill from overwriting a newer entry only while
        that entry lives; one written after the read lives at least the shortest jittered
        TTL, so a fill stored within half of that (the other half for the cache's own
        round trip) always meets it."""
        return min(self.ttl, self.negative_ttl) * (1.0 - self.jitter) / 2


@dataclass(frozen=True, slots=True)
class AnswerLimits:
    """The most a batch read may answer: a client cannot make the server build (or the
    database read) more than this for one request."""

    rows: int = 10_000
    bytes: int = 4 * 1024 * 1024


def key_text(value: Any) -> str:
    """A value as it stands in a cache key: unambiguous for the field's type, and free of
    the separators keys and invalidation messages use (``:``, newlines)."""
    if value is None:
        return "%00"  # never a text's quoting: NUL is refused in text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(value, safe="")
    if isinstance(value, float):
        return repr(value + 0.0)  # -0.0 is 0.0 to every database: one key for both
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class CacheKeys:
    """The names of one resource's entries: each resource in its own part of the namespace,
    within the part of the database they come from (``database``: its identity, see
    ``Store.identity``; empty until the service knows it).

    A generation's name starts with a Redis Cluster hash tag (``{…}``), and every entry
    filed under it starts with that tag: an entry and its generations always share a hash
    slot, so the cache's conditional fill (one script over them all) runs on one shard.
    Rows carry no tag: each is a key of its own, spread over the slots by its whole name.

    ``in_order``: the store's pages come in the order of their fields' values (SQL), so a
    page's range of values is known and it is filed under that range's nodes (``spans``)
    or, asking for a few values of a ``sets`` field, under those values' generations;
    otherwise (DynamoDB's scans) under the lists' generation, which every write moves.
    """

    def __init__(self, resource: Resource, database: str = "", *, in_order: bool = True) -> None:
        self.resource = resource
        self.in_order = in_order
        self._prefix = f"{database}:{resource.name}:" if database else f"{resource.name}:"
        self.lists_generation = "{" + self._prefix + "lists}"
        #: The fields a page may be in the order of (its range then being of that field's
        #: values), and whether their values' order keys follow the page's order: a text
        #: key's order is the database's collation, not bytes, so only the root holds it.
        self._spanned = {
            name: not (name == resource.key and not _numeric_key(resource))
            for name in dict.fromkeys((resource.key, *resource.ranges, *resource.prefixes))
        }
        self._nodes = {name: spans.Nodes(self._tag(name, "spans")) for name in self._spanned}
        self._sets = {name: self._tag(name, "in") for name in resource.sets}
        self._pages: dict[Query, tuple[str, tuple[str, ...]]] = {}

    def row(self, key: Key) -> str:
        if type(key) is int:  # the common case, and nothing to escape in it
            return f"{self._prefix}row:{key}"
        return f"{self._prefix}row:{key_text(key)}"

    def lookup(self, field: str, value: Any) -> str:
        """All rows with one value of a lookup field, filed under that value's generation."""
        return self.lookup_generation(field, value) + ":lookup"

    def lookup_generation(self, field: str, value: Any) -> str:
        return "{" + f"{self._prefix}{field}:{key_text(value)}" + "}"

    def page(self, query: Query) -> tuple[str, tuple[str, ...]]:
        """A page's entry name and the generations it is filed under, remembered for the
        last ``_PAGES_KEPT`` queries asked (a cached page's hit spent more on its names,
        the range's nodes and the quoted parameters, than on the cache)."""
        try:
            named = self._pages.get(query)
        except TypeError:  # a filter on a JSON field: its value a document, never kept
            return self._named(query)
        if named is None:
            named = self._named(query)
            if len(self._pages) >= _PAGES_KEPT:
                self._pages.clear()
            self._pages[query] = named
        return named

    def _named(self, query: Query) -> tuple[str, tuple[str, ...]]:
        tag, generations = self._filing(query)
        return f"{tag}:list:" + self._page_text(query), generations

    def _page_text(self, query: Query) -> str:
        after = "" if query.after is None else key_text(query.after)
        pairs = [(name, key_text(value)) for name, value in query.filters]
        for condition in query.conditions:
            value = condition.value
            text = ",".join(map(key_text, value)) if condition.op == "in" else key_text(value)
            pairs.append((f"{condition.field}[{condition.op}]", text))
        if query.ordered:
            pairs.append(("order", ("-" if query.descending else "") + ",".join(query.order)))
        if query.position is not None:
            pairs.append(("at", ",".join(map(key_text, query.position))))
        if query.fields:
            pairs.append(("fields", ",".join(query.fields)))
        return urlencode([*pairs, ("after", after), ("limit", query.limit)])

    def _filing(self, query: Query) -> tuple[str, tuple[str, ...]]:
        """The tag of a page's entry and the generations it is filed under: a filter on a
        lookup field files it under that value's generation; in order, a few values of a
        ``sets`` field under theirs; else the nodes of its range of its order's field
        (``spans.cover``); out of order, the lists' generation."""
        resource = self.resource
        for name, value in query.filters:
            if name in resource.lookups:
                generation = self.lookup_generation(name, value)
                return generation, (generation,)
        if not self.in_order:
            return self.lists_generation, (self.lists_generation,)
        for name, values in [
            *((name, (value,)) for name, value in query.filters),
            *((c.field, c.value) for c in query.conditions if c.op == "in"),
        ]:
            if name in resource.sets and len(values) <= spans.MOST_NODES:
                tag = self._tag(name, "in")
                return tag, tuple(sorted({f"{tag}:{key_text(value)}" for value in values}))
        field = query.order[0] if query.order else resource.key
        return self._tag(field, "spans"), self._nodes[field].cover(*self._range(query, field))

    def _tag(self, field: str, kind: str) -> str:
        return "{" + f"{self._prefix}{field}:{kind}" + "}"

    def _range(self, query: Query, field: str) -> tuple[int, int]:
        """The lowest and highest order keys of ``field`` a page's rows can have: from the
        query's conditions and filters on it and where the page starts (its cursor)."""
        low, high = spans.FULL
        if not self._spanned[field]:
            return low, high
        bounds: list[tuple[str, Any]] = [
            (c.op, c.value) for c in query.conditions if c.field == field
        ]
        bounds += [("in", (value,)) for name, value in query.filters if name == field]
        if query.ordered and query.position is not None:
            bounds.append(("lte" if query.descending else "gte", query.position[0]))
        elif not query.ordered and query.after is not None:
            bounds.append(("gte", query.after))
        for op, value in bounds:
            if op == "prefix":
                first, last = spans.prefix_keys(value)
            elif op == "in":
                keys = [spans.order_key(item) for item in value]
                known = [key for key in keys if key is not None]
                if len(known) < len(keys):
                    continue
                first, last = min(known), max(known)
            elif op in ("gt", "gte", "lt", "lte"):
                key = spans.order_key(value)
                if key is None:
                    continue
                first, last = (key, spans.FULL[1]) if op in ("gt", "gte") else (0, key)
            else:
                continue  # a null test says nothing of the values
            low, high = max(low, first), min(high, last)
        return low, max(low, high)

    def moved_by(self, *records: Record | None) -> set[str]:
        """The generations a write of these row states moves."""
        moved = {self.lists_generation}
        for record in records:
            if record is not None:
                for field in self.resource.lookups:
                    moved.add(self.lookup_generation(field, record.values[field]))
        return moved

    def dropped_by(self, *records: Record | None) -> set[str]:
        """The generations a write of these row states drops: in order, every node its
        rows' values of each field a page may be ordered by fall in, and its rows' values
        of each ``sets`` field (a page holding the row, before or after, is filed under one
        of them)."""
        if not self.in_order:
            return set()
        held = [record for record in records if record is not None]
        dropped: set[str] = set()
        key_field = self.resource.key
        for field, spanned in self._spanned.items():
            nodes = self._nodes[field]
            values = {r.key if field == key_field else r.values[field] for r in held}
            for value in values:
                if value is None:
                    continue  # no page in this field's order holds a row without a value
                key = spans.order_key(value) if spanned else None
                if key is None:
                    dropped.add(nodes.root)
                else:
                    dropped.update(nodes.ancestors(key))
        for field, tag in self._sets.items():
            dropped.update(f"{tag}:{key_text(r.values[field])}" for r in held)
        return dropped


#: The page queries whose names ``CacheKeys`` remembers (all forgotten when full): about
#: 300 bytes each.
_PAGES_KEPT = 4096


def _numeric_key(resource: Resource) -> bool:
    """Whether the resource's key orders by its value in every store: a number, a date or
    a time (a text's order is the database's collation; a composite key's is its parts')."""
    return not resource.composite and resource.key_field.type_name in _NUMERIC_TYPES


_NUMERIC_TYPES = frozenset(
    {"integer", "number", "decimal", "date", "time", "timestamp", "local_datetime"}
)


def combined(generations: Sequence[int]) -> int:
    """The version of an entry filed under these generations (in their keys' order): the
    one generation itself, or 61 bits of a hash of them all."""
    if len(generations) == 1:
        return generations[0]
    digest = hashlib.blake2b(b"".join(g.to_bytes(8) for g in generations), digest_size=8)
    return int.from_bytes(digest.digest()) >> 3


def page_json(records: Sequence[Record], query: Query, cursors: Cursors) -> bytes:
    """A page of at most ``query.limit`` rows, each with the fields it asks for; ``records``
    may hold one more, to tell if more exist. What comes next is named by the last row's
    key, or in an order of the query's own by a cursor (``pages``)."""
    page = records[: query.limit]
    last = page_after(records, query.limit)
    after: Any = None
    if last is not None:
        after = cursors.after(query, last) if query.ordered else last.key
    if query.fields:
        items: list[Any] = [{name: r.values[name] for name in query.fields} for r in page]
    else:
        items = [r.values for r in page]
    return to_json({"items": items, "next_after": after})


def _rows_json(records: Iterable[Record]) -> bytes:
    return to_json([r.values for r in records])


def _json_array(items: Iterable[bytes]) -> bytes:
    """A JSON array of already-encoded items (cached bytes), skipping empty ones."""
    return b"[" + b",".join(item for item in items if item) + b"]"


def _join_arrays(arrays: Iterable[bytes]) -> bytes:
    """Concatenate JSON arrays (cached bytes) into one, without decoding them."""
    return _json_array(array[1:-1] for array in arrays)


def _rows_in(body: bytes) -> int:
    """The rows in a cached body (one row, or a JSON array of them), without decoding it:
    rows are flat objects, and ``{"`` can only open one (a quote inside a string is
    escaped)."""
    return body.count(b'{"')


#: What a fill answers for a value it did not read completely (the row bound cut it short).
_UNREAD = Entry(-1, b"")


def _count(outcomes: Outcomes, body: bytes | None, outcome: Outcome, version: int = 0) -> Served:
    """The read's answer, counted under its operation and outcome."""
    if outcome is Outcome.HIT:
        outcomes.hit.inc()
    elif outcome is Outcome.MISS:
        outcomes.miss.inc()
    else:
        outcomes.bypass.inc()
    return Served(body, outcome, version)


class ResourcePolicy:
    def __init__(
        self,
        rows: Rows,
        cache: ResilientCache,
        tuning: Tuning | None = None,
        limits: AnswerLimits | None = None,
    ) -> None:
        self.rows = rows
        self.resource = rows.resource
        self.cache = cache
        self.tuning = tuning or Tuning()
        self.limits = limits or AnswerLimits()
        self.keys = CacheKeys(self.resource, in_order=rows.pages_in_order)
        self.cursors = Cursors(self.resource, "")
        self._flights: SingleFlight[Entry] = SingleFlight()
        # The misses of one turn of the event loop, filled together (``batching``).
        self._misses: TickBatcher[Key, Entry] = TickBatcher(self._fill_misses)
        # The fewest bytes a row's JSON takes (empty text, one-digit numbers) and its comma.
        self._smallest_row = len(_smallest_row(self.resource)) + 1
        name = self.resource.name
        self._read, self._many, self._list, self._lookup = (
            Outcomes(operation, name) for operation in ("read", "batch_id", "list", "lookup")
        )

    def serve_database(self, database_id: str) -> None:
        """File this resource's entries, and sign its cursors, under the identity of the
        database it serves (``Store.identity``)."""
        self.keys = CacheKeys(self.resource, database_id, in_order=self.rows.pages_in_order)
        self.cursors = Cursors(self.resource, database_id)

    # -- reads by key: versioned entries ----------------------------------------------

    async def read(self, key: Key, *, use_cache: bool = True) -> Served:
        """One row by key: its JSON, or None if there is no such row.

        The read-through of one key (as ``_through`` is of many): a hit is one lookup,
        with none of ``_through``'s lists and dictionaries (measured: they cost a cached
        read more than a microsecond, a tenth of it); misses of one loop turn are filled
        together (``_fill_misses``)."""
        if use_cache:
            name = self.keys.row(key)
            try:
                entry = await self.cache.get(name)
            except CacheUnavailable:
                pass
            else:
                outcome = Outcome.HIT
                if entry is None:
                    entry, outcome = await self._misses.load(name, key), Outcome.MISS
                return _count(self._read, entry.body or None, outcome, entry.version)
        record = await self.rows.get(key)
        if record is None:
            return _count(self._read, None, Outcome.BYPASS)
        return _count(self._read, record.to_json(), Outcome.BYPASS, record.version)

    def held(self, key: Key) -> Entry | None:
        """A row this process holds (the near-cache's L1, the in-process cache), counted as
        a hit with no await: the edge's first read, which costs a dictionary lookup instead
        of a coroutine per step. None while the cache is not in plain use (its breaker not
        closed, writes pending), when the row is not held here, or is held as absent:
        ``read`` answers those."""
        entry = self.cache.peek(self.keys.row(key))
        if entry is None or not entry.body:
            return None
        self._read.hit.inc()
        return entry

    async def read_many(self, keys: Sequence[Key], *, use_cache: bool = True) -> Served:
        """The rows that exist among ``keys``, in request order, as one JSON array."""
        if use_cache:
            found = await self._versioned(keys)
            if found is not None:
                entries, missed = found
                bodies = {key: entry.body for key, entry in entries.items()}
                self._check_answer(bodies, keys)
                body = _json_array(bodies[key] for key in keys)
                return _count(self._many, body, Outcome.MISS if missed else Outcome.HIT)
        records = await self.rows.get_many(keys)
        bodies = {key: record.to_json() for key, record in records.items()}
        present = [key for key in keys if key in bodies]
        self._check_answer(bodies, present)
        return _count(self._many, _json_array(bodies[key] for key in present), Outcome.BYPASS)

    async def _through(
        self,
        cached: Callable[[], Awaitable[list[Found]]],
        fill: Callable[[Mapping[str, Any]], Awaitable[dict[str, Entry]]],
    ) -> tuple[list[Found], bool] | None:
        """The read-through of many entries (as ``read`` is of one): what ``cached`` finds
        (for each entry wanted: its flight, the entry if the cache holds a valid one, what a
        fill of it needs), each missing one filled by ``fill`` (single-flight per flight),
        in ``cached``'s order; and whether any missed. None when the cache cannot be used:
        the caller reads the database, and the cache is left alone."""
        try:
            found = await cached()
        except CacheUnavailable:
            return None
        misses = {flight: what for flight, entry, what in found if entry is None}
        if not misses:
            return found, False
        filled = await self._fly(misses, fill)
        return [(f, e if e is not None else filled[f], w) for f, e, w in found], True

    async def _fly(
        self,
        wanted: Mapping[str, Any],
        fill: Callable[[Mapping[str, Any]], Awaitable[dict[str, Entry]]],
    ) -> dict[str, Entry]:
        """Each wanted entry filled, one fill per flight among concurrent readers."""
        return await self._flights.do_many(
            list(wanted), lambda flights: fill({flight: wanted[flight] for flight in flights})
        )

    async def _versioned(self, keys: Sequence[Key]) -> tuple[dict[Key, Entry], bool] | None:
        """Each key's entry, from the cache or filled from the database, and whether any
        missed; None when the cache cannot be used."""
        unique = list(dict.fromkeys(keys))
        names = [self.keys.row(key) for key in unique]

        async def cached() -> list[Found]:
            entries = await self.cache.get_many(names)
            return list(zip(names, entries, unique, strict=True))

        through = await self._through(cached, self._fill_rows)
        if through is None:
            return None
        found, missed = through
        return {key: entry for _, entry, key in found if entry is not None}, missed

    async def _fill_misses(self, wanted: Mapping[str, Key]) -> dict[str, Entry]:
        """Fill the entries of single reads that missed together."""
        return await self._fly(wanted, self._fill_rows)

    async def _fill_rows(self, wanted: Mapping[str, Key]) -> dict[str, Entry]:
        started = time.monotonic()
        records = await self.rows.get_many(list(wanted.values()))
        filled: dict[str, Entry] = {}
        fills: list[tuple[str, Entry, float]] = []
        for name, key in wanted.items():
            record = records.get(key)
            if record is None:
                entry, ttl = Entry(0, b""), self.tuning.negative_ttl
            else:
                entry, ttl = Entry(record.version, record.to_json()), self.tuning.ttl
            filled[name] = entry
            fills.append((name, entry, self._jittered(ttl)))
        if time.monotonic() - started > self.tuning.fill_window:
            return filled  # answered, not stored: a newer entry may have come and gone
        await self.cache.put_many_if_newer(fills)
        return filled

    # -- lookups and lists: generation-filed entries ------------------------------------

    async def find(self, query: Query, *, use_cache: bool = True) -> Served:
        """A page of rows matching ``query``, as the JSON of a page."""
        if use_cache:
            name, generation_keys = self.keys.page(query)
            # Read from an index (a lookup's) where filed under a lookup's generation.
            indexed = any(name in self.resource.lookups for name, _ in query.filters)

            async def fill(wanted: Mapping[str, Filing]) -> dict[str, Entry]:
                records = await self.rows.find(_one_more(query))
                body = page_json(records, query, self.cursors)
                return await self._keep_filed(wanted, lambda _name: body, indexed=indexed)

            found = await self._filed([(name, key) for key in generation_keys], fill)
            if found is not None:
                [body], missed = found
                return _count(self._list, body, Outcome.MISS if missed else Outcome.HIT)
        records = await self.rows.find(_one_more(query))
        body = page_json(records, query, self.cursors)
        return _count(self._list, body, Outcome.BYPASS)

    async def lookup(self, field: str, values: Sequence[Any], *, use_cache: bool = True) -> Served:
        """Every row with each of ``values`` in the lookup field ``field``, in request order
        (by key within one value; a value asked twice gives its rows twice), as one JSON
        array. Each value's rows are one entry, filed under that value's generation."""
        unique = list(dict.fromkeys(values))
        if use_cache:
            names = {self.keys.lookup(field, value): value for value in unique}
            pairs = [
                (name, self.keys.lookup_generation(field, value)) for name, value in names.items()
            ]

            async def fill(wanted: Mapping[str, Filing]) -> dict[str, Entry]:
                return await self._fill_lookup(
                    field, {f: names[w[0]] for f, w in wanted.items()}, wanted
                )

            order = [self.keys.lookup(field, value) for value in values]
            found = await self._filed(pairs, fill, order, bounded=True)
            if found is not None:
                bodies, missed = found
                return _count(
                    self._lookup, _join_arrays(bodies), Outcome.MISS if missed else Outcome.HIT
                )
        records = await self.rows.lookup(field, unique, self.limits.rows + 1)
        if sum(len(rows) for rows in records.values()) > self.limits.rows:
            raise AnswerTooLarge("rows", self.limits.rows)
        by_value = {value: _rows_json(records[value]) for value in unique}
        self._check_answer(by_value, values)
        return _count(self._lookup, _join_arrays(by_value[v] for v in values), Outcome.BYPASS)

    async def _filed(
        self,
        pairs: Sequence[tuple[str, str]],
        fill: Callable[[Mapping[str, Filing]], Awaitable[dict[str, Entry]]],
        order: Sequence[str] | None = None,
        *,
        bounded: bool = False,
    ) -> tuple[list[bytes], bool] | None:
        """The bodies of generation-filed entries (``pairs``: an entry's name and the name
        of a generation it is filed under; one filed under several, in as many pairs one
        after the other), in ``order`` (entry names, which may repeat; ``pairs``' order by
        default), from the cache where filed under the current generations, else filled
        (single-flight per entry and generations); and whether any missed. None when the
        cache cannot be used.

        ``fill`` gets {flight: its ``Filing``} and answers each flight's entry, or ``_UNREAD``
        for one it did not read whole (the row bound): this request then reads those
        itself, once, unshared; if they still do not fit, the answer is too large."""
        order = order if order is not None else list(dict.fromkeys(name for name, _ in pairs))

        async def cached() -> list[Found]:
            found = await self.cache.get_with_generations(
                pairs, [new_generation() for _ in pairs], self.tuning.generation_ttl
            )
            filed: list[Found] = []
            at, count = 0, len(pairs)
            while at < count:
                name, key = pairs[at]
                entry, version = found[at]
                keys: tuple[str, ...] = (key,)
                values: tuple[int, ...] = (version,)
                at += 1
                # Filed under several generations (a page): named in the pairs that follow.
                if at < count and pairs[at][0] == name:
                    while at < count and pairs[at][0] == name:
                        keys, values = (*keys, pairs[at][1]), (*values, found[at][1])
                        at += 1
                    version = combined(values)
                current = entry if entry is not None and entry.version == version else None
                filed.append((f"{name}@{version}", current, (name, keys, values, version)))
            if bounded:  # past a bound with what the cache holds already: no database work
                bodies = {what[0]: e.body for _, e, what in filed if e is not None}
                self._check_answer(bodies, [name for name in order if name in bodies])
            return filed

        through = await self._through(cached, fill)
        if through is None:
            return None
        found, missed = through
        unread = {flight: what for flight, entry, what in found if entry is _UNREAD}
        if unread:
            again = await fill(unread)
            found = [(f, again.get(f, e), w) for f, e, w in found]
        if any(entry is _UNREAD for _, entry, _ in found):
            raise AnswerTooLarge("rows", self.limits.rows)
        bodies = {what[0]: entry.body for _, entry, what in found if entry is not None}
        if bounded:
            self._check_answer(bodies, order)
        return [bodies[name] for name in order], missed

    async def _fill_lookup(
        self, field: str, values: Mapping[str, Any], wanted: Mapping[str, Filing]
    ) -> dict[str, Entry]:
        """Read the values' rows at most the row bound at a time; store those read whole."""
        bound = self.limits.rows + 1
        records = await self.rows.lookup(field, list(values.values()), bound)
        cut_at: Any = None
        if sum(len(rows) for rows in records.values()) >= bound:
            # Cut short: values are read in order, so those below the last one reached
            # are whole; the last one and the rest were cut or never reached.
            cut_at = max(value for value, rows in records.items() if rows)
        bodies = {
            flight: _rows_json(records[value])
            for flight, value in values.items()
            if cut_at is None or value < cut_at
        }
        return await self._keep_filed(wanted, bodies.get, indexed=True)

    async def _keep_filed(
        self,
        wanted: Mapping[str, Filing],
        body_of: Callable[[str], bytes | None],
        *,
        indexed: bool,
    ) -> dict[str, Entry]:
        """Fill each wanted entry with its body (``_UNREAD`` where there is none), each
        stored only if its generations have not moved since the database was read.

        ``indexed``: read from a lookup field's index, which may lag the table by up to
        ``rows.lookup_lag`` seconds (DynamoDB's global secondary indexes). Read within that
        time of the write that moved its generation, it may be from before that write: it
        is answered, not stored, so no lagging read outlives the lag in the cache."""
        lag = self.rows.lookup_lag if indexed else 0.0
        filled: dict[str, Entry] = {}
        for flight, (name, keys, values, version) in wanted.items():
            body = body_of(flight)
            if body is None:
                filled[flight] = _UNREAD
                continue
            entry = filled[flight] = Entry(version, body)
            if lag and any(moved_within(g, lag) for g in values):
                continue
            ttl = self._jittered(self.tuning.ttl)
            generations = dict(zip(keys, values, strict=True))
            await self.cache.put_if_generations(name, generations, entry, ttl)
        return filled

    def _check_answer(self, bodies: Mapping[Any, bytes], order: Sequence[Any]) -> None:
        """Raise AnswerTooLarge if the answer made of ``bodies`` in ``order`` (a key may
        repeat) would pass a bound."""
        size = sum(len(bodies[key]) + 1 for key in order)
        if size > self.limits.bytes:
            raise AnswerTooLarge("bytes", self.limits.bytes)
        # Rows are counted only when the size says there could be too many: counting scans
        # every byte, and would cost a cached batch read a third of its time.
        if size // self._smallest_row > self.limits.rows:
            rows = {key: _rows_in(body) for key, body in bodies.items()}
            if sum(rows[key] for key in order) > self.limits.rows:
                raise AnswerTooLarge("rows", self.limits.rows)

    # -- writes: the database first, then the cache -------------------------------------

    async def create_many(self, rows: Sequence[Mapping[str, Any]]) -> list[Record]:
        """Insert every row in one transaction (all or nothing), then write them through."""
        records = await self.rows.create_many(rows)
        await self._write_through(
            [
                (self.keys.row(r.key), Entry(r.version, r.to_json()), self.tuning.ttl)
                for r in records
            ],
            self.keys.moved_by(*records),
            self.keys.dropped_by(*records),
        )
        return records

    async def create(self, row: Mapping[str, Any]) -> Record:
        return (await self.create_many([row]))[0]

    async def update(
        self, key: Key, changes: Mapping[str, Any], *, expected: frozenset[int] | None = None
    ) -> Record | None:
        """Set ``changes`` on the row (PUT sends every field, PATCH some); None if absent.
        With ``expected``, only from that version (VersionMismatch otherwise)."""
        result = await self.rows.update(key, changes, expected=expected)
        if result is None:
            return None
        before, after = result
        await self._written(after, before)
        return after

    async def put(
        self, key: Key, values: Mapping[str, Any], *, expected: frozenset[int] | None = None
    ) -> tuple[bool, Record]:
        """Replace the row under a client-given key, or create it: (created, the row)."""
        before, after = await self.rows.put(key, values, expected=expected)
        await self._written(after, before)
        return before is None, after

    async def _written(self, after: Record, before: Record | None) -> None:
        await self._write_through(*self._change(before, after))

    def _change(
        self, before: Record | None, after: Record | None
    ) -> tuple[list[tuple[str, Entry, float]], set[str], set[str]]:
        """What a committed change of one row puts in the cache: the row at its new
        version, or a tombstone one above the deleted row's (newer than any fill that read
        the row before it was deleted); the generations it moves and those it drops."""
        if after is not None:
            item = (
                self.keys.row(after.key),
                Entry(after.version, after.to_json()),
                self.tuning.ttl,
            )
        else:
            assert before is not None
            tombstone = Entry(before.version + 1, b"")
            item = (self.keys.row(before.key), tombstone, self.tuning.negative_ttl)
        return [item], self.keys.moved_by(before, after), self.keys.dropped_by(before, after)

    async def changed(self, changes: Sequence[tuple[Record | None, Record | None]]) -> None:
        """Changes read from the database's log (``twotier.follow``), each as (before,
        after): invalidate what they make stale exactly as their write-throughs would.
        Raises CacheUnavailable if the cache did not take them (they are made again once it
        answers): the follower must not move past a change the cache did not take."""
        items: list[tuple[str, Entry, float]] = []
        generation_keys: set[str] = set()
        dropped: set[str] = set()
        for before, after in changes:
            change_items, moved, gone = self._change(before, after)
            items += change_items
            generation_keys |= moved
            dropped |= gone
        for name, _, _ in items:
            self._flights.forget(name)
        await self.cache.write(
            [(name, entry, self._jittered(ttl)) for name, entry, ttl in items],
            {g: written_generation() for g in generation_keys},
            self.tuning.generation_ttl,
            list(dropped),
        )

    async def delete(self, key: Key, *, expected: frozenset[int] | None = None) -> int | None:
        """Delete the row; return the version of its tombstone, or None if it was absent."""
        before = await self.rows.delete(key, expected=expected)
        if before is None:
            return None
        await self._write_through(*self._change(before, None))
        return before.version + 1

    async def _write_through(
        self,
        items: Sequence[tuple[str, Entry, float]],
        generation_keys: set[str],
        dropped: set[str],
    ) -> None:
        """After a commit: store the new values, and move and drop the generations the
        write touched (a write the cache does not take is made again once it answers:
        ResilientCache)."""
        for name, _, _ in items:
            self._flights.forget(name)
        timed = [(name, entry, self._jittered(ttl)) for name, entry, ttl in items]
        with contextlib.suppress(CacheUnavailable):  # committed: the request goes on
            await self.cache.write(
                timed,
                {g: written_generation() for g in generation_keys},
                self.tuning.generation_ttl,
                list(dropped),
            )

    async def bulk_load(self, rows: LoadRows, *, replace: bool, keep: Callable[[], bool]) -> int:
        """Load rows in bulk, then forget everything cached.

        Loaded rows are born with a version from the clock (``twotier.versions``), above
        the versions of the rows they replace, so no fill of an older row can win over
        them afterwards.
        """
        loaded = await self.rows.bulk_load(rows, replace=replace, keep=keep)
        self._flights = SingleFlight()
        with contextlib.suppress(CacheUnavailable):  # emptied once it answers
            await self.cache.clear()
        return loaded

    def _jittered(self, ttl: float) -> float:
        """Spread expiries so that entries filled together do not all miss together."""
        return ttl * (1.0 - self.tuning.jitter * random.random())


def _one_more(query: Query) -> Query:
    return query.with_limit(query.limit + 1)


def _smallest_row(resource: Resource) -> bytes:
    """A row's JSON with the fewest bytes its fields allow."""
    smallest: dict[str, Any] = {}
    for name in resource.columns:
        spec = resource.field(name)
        smallest[name] = None if spec.nullable else _SMALLEST.get(spec.type_name, 0)
    return orjson.dumps(smallest)


_SMALLEST: dict[str, Any] = {
    "string": "",
    "integer": 0,
    "number": 0,
    "boolean": True,
    "timestamp": "",
}
