"""Metrics (Prometheus) and the per-request record the access log reads.

Counters are module-level and pre-bound per label where the labels are known up front, so
that counting on the hot path is one increment. Gauges of live state (pool, breaker,
caches) are read at scrape time from the process's policy. Everything is per process: with
several workers, scrape each (or sum them); in Lambda the same figures leave as CloudWatch
Embedded Metric Format (``twotier.emf``).
"""

from __future__ import annotations

import bisect
import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import ClassVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

# Request latencies: a cached read takes well under a millisecond, a cold page tens.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

CACHE_UNREPLICATED = Counter(
    "twotier_cache_unreplicated_writes",
    "Write-through batches on a Redis Cluster that no replica of a primary confirmed: "
    "its wait (TWOTIER_CACHE_REPLICA_WAIT) ran out, or was skipped in the 5 s after one "
    "did (a failover of that primary could lose them).",
    registry=REGISTRY,
)
CACHE_ERRORS = Counter(
    "twotier_cache_errors",
    "Cache calls that failed or timed out, by the operation that made them.",
    ["operation"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "twotier_rate_limited",
    "Requests refused with 429, by what was limited (key or addr).",
    ["by"],
    registry=REGISTRY,
)
REJECTED = Counter(
    "twotier_auth_rejections",
    "Requests refused for want of a valid key (401) or of a role (403).",
    ["status"],
    registry=REGISTRY,
)
DATABASE_QUERY_DURATION = Histogram(
    "twotier_database_query_duration_seconds",
    "Time of each database round trip (one statement or transaction, pool wait included).",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
# The change-log follower (``twotier.follow``).
FOLLOW_APPLIED = Counter(
    "twotier_follow_changes",
    "Row changes read from the database's change log and applied to the cache.",
    registry=REGISTRY,
)
FOLLOW_LAG = Histogram(
    "twotier_follow_lag_seconds",
    "From a change's commit (as the log records it: MySQL's binlog in whole seconds) to its "
    "invalidation in the cache.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
    registry=REGISTRY,
)
FOLLOW_RETAINED = Gauge(
    "twotier_follow_retained_bytes",
    "PostgreSQL: WAL the follower's replication slot keeps the server from recycling, as of "
    "its last saved position.",
    registry=REGISTRY,
)
READY = Gauge(
    "twotier_ready",
    "1 while the database and the cache both answer (as /readyz says), else 0; written by "
    "servers reporting EMF (TWOTIER_EMF_EVERY).",
    registry=REGISTRY,
)
READY.set(math.nan)
FOLLOW_HEARD = Gauge(
    "twotier_follow_heartbeat_age_seconds",
    "Seconds since the follower holding the lease last heard from the change log (a change "
    "or a heartbeat, every second while the log is healthy); none while standing by.",
    registry=REGISTRY,
)


def follow_heard(when: Callable[[], float] | None) -> None:
    """``FOLLOW_HEARD`` from the holder's clock of its last word from the log (``time.monotonic``),
    read at each scrape; None while this process holds no lease. Only functions: a gauge that
    has had one ignores ``set``."""
    if when is None:
        FOLLOW_HEARD.set_function(lambda: math.nan)
    else:
        FOLLOW_HEARD.set_function(lambda: time.monotonic() - when())


follow_heard(None)
FOLLOW_RESETS = Counter(
    "twotier_follow_resets",
    "Times the follower emptied the cache and followed from the log's end (no position, or "
    "a position the log no longer holds).",
    registry=REGISTRY,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


#: The methods counted by name; anything else a client sends counts as ``other``, so that
#: no client can grow the label set (and /metrics with it).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "INVOKE"})


def method_label(method: str) -> str:
    """The ``method`` label of a request: its method if known, else ``other``."""
    return method if method in _METHODS else "other"


class Tally:
    """The counts of one route, method and status: bound once by a caller that answers the
    same kind of request again and again (the held read), counted with one call."""

    __slots__ = ("_buckets", "_by_bucket", "_total", "requests")

    def __init__(self, buckets: tuple[float, ...], by_bucket: list[int], total: list[float]):
        self.requests = 0
        self._buckets = buckets
        # Shared by the statuses of one route and method: the histogram has no status label.
        self._by_bucket = by_bucket
        self._total = total

    def add(self, seconds: float) -> None:
        self.requests += 1
        self._by_bucket[bisect.bisect_left(self._buckets, seconds)] += 1
        self._total[0] += seconds


class RequestStats(Collector):
    """``twotier_requests_total`` and ``twotier_request_duration_seconds``, counted in plain
    objects and turned into metric families when scraped.

    Every request passes here, and prometheus_client's Counter and Histogram take a lock
    per increment (plus a label lookup). Requests are counted on the event loop's thread
    only, so plain updates are safe and cost a fraction of that.
    """

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self._tallies: dict[tuple[str, str, int], Tally] = {}
        # (route, method) -> [count per bucket (non-cumulative, +Inf last), sum]
        self._durations: dict[tuple[str, str], tuple[list[int], list[float]]] = {}

    def tally(self, route: str, method: str, status: int) -> Tally:
        """The counts of one route, method and status (``route`` a template or a fixed
        name, never a path)."""
        method = method_label(method)
        found = self._tallies.get((route, method, status))
        if found is None:
            timing = self._durations.get((route, method))
            if timing is None:
                timing = self._durations[route, method] = ([0] * (len(self.buckets) + 1), [0.0])
            found = self._tallies[route, method, status] = Tally(self.buckets, *timing)
        return found

    def count(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request; ``route`` must be a template or a fixed name, never a path."""
        found = self._tallies.get((route, method, status))
        if found is None:
            found = self.tally(route, method, status)
        found.add(seconds)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "twotier_requests",
            "HTTP requests answered, by route template, method and status.",
            labels=["route", "method", "status"],
        )
        for (route, method, status), tally in list(self._tallies.items()):
            requests.add_metric([route, method, str(status)], tally.requests)
        yield requests
        durations = HistogramMetricFamily(
            "twotier_request_duration_seconds",
            "Time from the request's arrival to its last response byte, by route template.",
            labels=["route", "method"],
        )
        bounds = [*(str(float(b)) for b in self.buckets), "+Inf"]
        for (route, method), (counts, total) in list(self._durations.items()):
            cumulative = list(itertools.accumulate(counts))
            durations.add_metric(
                [route, method], list(zip(bounds, cumulative, strict=True)), total[0]
            )
        yield durations

    def describe(self) -> Iterable[Metric]:
        return []


REQUEST_STATS = RequestStats(_LATENCY_BUCKETS)
REGISTRY.register(REQUEST_STATS)
count_request = REQUEST_STATS.count


def exposition() -> bytes:
    """The metrics in Prometheus' text format."""
    return generate_latest(REGISTRY)


class _Count:
    """One counter's value, counted on the event loop's thread (as ``RequestStats``):
    a prometheus-client counter takes a lock per increment, profiled at 3% of a hit."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1


class OutcomeCounts(Collector):
    """``twotier_cache_{hits,misses,bypasses}_total`` by resource and operation."""

    _HELP: ClassVar[dict[str, str]] = {
        "hits": "Reads answered from the cache.",
        "misses": "Reads the cache could not answer (then filled from the database).",
        "bypasses": "Reads served from the database without the cache (asked for, or the "
        "cache was down).",
    }

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str], _Count] = {}

    def counter(self, kind: str, resource: str, operation: str) -> _Count:
        return self._counts.setdefault((kind, resource, operation), _Count())

    def collect(self) -> Iterator[Metric]:
        for kind, help_text in self._HELP.items():
            family = CounterMetricFamily(
                f"twotier_cache_{kind}", help_text, labels=["resource", "operation"]
            )
            for (counted, resource, operation), count in list(self._counts.items()):
                if counted == kind:
                    family.add_metric([resource, operation], count.value)
            yield family

    def describe(self) -> Iterable[Metric]:
        return []


OUTCOME_COUNTS = OutcomeCounts()
REGISTRY.register(OUTCOME_COUNTS)


class Outcomes:
    """The three outcome counters of one read operation of one resource, bound once."""

    def __init__(self, operation: str, resource: str) -> None:
        self.hit = OUTCOME_COUNTS.counter("hits", resource, operation)
        self.miss = OUTCOME_COUNTS.counter("misses", resource, operation)
        self.bypass = OUTCOME_COUNTS.counter("bypasses", resource, operation)


# -- the request being served -----------------------------------------------------------


@dataclass(slots=True)
class RequestRecord:
    """What the access log says of one request beyond its status: filled as it is served."""

    request_id: str
    database_seconds: float = 0.0
    database_queries: int = 0
    key_id: str | None = None
    resource: str | None = None  # the declared resource the request addressed


CURRENT_REQUEST: ContextVar[RequestRecord | None] = ContextVar("twotier_request", default=None)


class DatabaseTimer:
    """Times one database round trip into the histogram and the current request's record."""

    __slots__ = ("_started",)

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *_exc: object) -> None:
        elapsed = time.perf_counter() - self._started
        DATABASE_QUERY_DURATION.observe(elapsed)
        record = CURRENT_REQUEST.get()
        if record is not None:
            record.database_seconds += elapsed
            record.database_queries += 1


# -- live state, read at scrape time ----------------------------------------------------

#: Gauge name → (help, {label values: value}); labels are a tuple of (name, value) pairs.
GaugeReadings = Mapping[str, tuple[str, Mapping[tuple[tuple[str, str], ...], float]]]


class LiveState(Collector):
    """Gauges read from the serving policy when scraped (none while nothing serves)."""

    def __init__(self) -> None:
        self._source: Callable[[], GaugeReadings] | None = None

    def watch(self, source: Callable[[], GaugeReadings]) -> None:
        self._source = source

    def forget(self, source: Callable[[], GaugeReadings]) -> None:
        if self._source == source:
            self._source = None

    def readings(self) -> GaugeReadings:
        return self._source() if self._source is not None else {}

    def collect(self) -> Iterator[Metric]:
        for name, (help_text, samples) in self.readings().items():
            label_names = [label for label, _ in next(iter(samples), ())]
            family = GaugeMetricFamily(name, help_text, labels=label_names)
            for labels, value in samples.items():
                family.add_metric([v for _, v in labels], value)
            yield family

    def describe(self) -> Iterable[Metric]:
        return []  # names depend on the tiers; nothing to check up front


LIVE_STATE = LiveState()
REGISTRY.register(LIVE_STATE)
