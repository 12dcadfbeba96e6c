"""Metrics (Prometheus): what the cache and the database did, counted where it happens.

Counters are module-level and pre-bound per label, so that counting on the hot path is one
increment. They are per process: with several workers, scrape each (or sum them).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

CACHE_HITS = Counter(
    "twotier_cache_hits", "Reads answered from the cache.", ["operation"], registry=REGISTRY
)
CACHE_MISSES = Counter(
    "twotier_cache_misses",
    "Reads the cache could not answer (then filled from the database).",
    ["operation"],
    registry=REGISTRY,
)
CACHE_BYPASSES = Counter(
    "twotier_cache_bypasses",
    "Reads served from the database without the cache (asked for, or the cache was down).",
    ["operation"],
    registry=REGISTRY,
)
CACHE_ERRORS = Counter(
    "twotier_cache_errors", "Cache calls that failed or timed out.", registry=REGISTRY
)
DATABASE_QUERIES = Counter(
    "twotier_database_queries",
    "Round trips to the database (one per statement or transaction).",
    registry=REGISTRY,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def exposition() -> bytes:
    """The metrics in Prometheus' text format."""
    return generate_latest(REGISTRY)


class Outcomes:
    """The three outcome counters of one read operation, bound once."""

    def __init__(self, operation: str) -> None:
        self.hit = CACHE_HITS.labels(operation)
        self.miss = CACHE_MISSES.labels(operation)
        self.bypass = CACHE_BYPASSES.labels(operation)
