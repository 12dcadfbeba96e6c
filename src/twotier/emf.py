"""The Prometheus figures as CloudWatch Embedded Metric Format (EMF), for Lambda and ECS.

A Lambda function has no /metrics to scrape. After each invocation the runtime writes what
changed since the last one as EMF documents, one JSON line each, on stdout; CloudWatch Logs
turns them into metrics in the ``twotier`` namespace. A server or a follower in a container
writes them every so often instead (``report_every``: the CDK stacks' ECS tasks, whose log
driver takes stdout to CloudWatch). Names follow CloudWatch habits:
``twotier_cache_hits_total{operation}`` becomes ``CacheHits`` with an ``Operation``
dimension, latency histograms become ``…Duration`` in milliseconds. Every metric is also
published without dimensions, so that an alarm can watch the total.

Counters give their increase; histograms give their mean over the invocation, once per
observation (exact for one request per invocation, API Gateway's case); gauges give their
value.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TextIO

import orjson
from prometheus_client import CollectorRegistry

from twotier.telemetry import REGISTRY

NAMESPACE = "twotier"
_MAX_VALUES = 100  # EMF's bound on the values of one metric in one document

Labels = tuple[tuple[str, str], ...]


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def metric_name(family: str) -> str:
    """``twotier_cache_hits`` → ``CacheHits``; ``…_duration_seconds`` → ``…Duration``."""
    name = family.removeprefix(f"{NAMESPACE}_").removesuffix("_seconds")
    return _camel(name)


class EmfExporter:
    """Turns the registry's changes since the previous call into EMF documents."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self._seen: dict[tuple[str, Labels], float] = {}

    def documents(self) -> list[dict[str, Any]]:
        groups: dict[Labels, dict[str, tuple[str, Any]]] = defaultdict(dict)
        for labels, name, unit, value in self._changes():
            groups[labels][name] = (unit, value)
        timestamp = int(time.time() * 1000)
        return [_document(labels, metrics, timestamp) for labels, metrics in groups.items()]

    def write(self, out: TextIO) -> None:
        """What changed since the last call, as EMF lines on ``out`` (Lambda's stdout, a
        container's log), flushed."""
        for document in self.documents():
            out.write(orjson.dumps(document).decode() + "\n")
        out.flush()

    def _delta(self, key: tuple[str, Labels], value: float) -> float:
        previous = self._seen.get(key, 0.0)
        self._seen[key] = value
        return value - previous

    def _changes(self) -> Iterator[tuple[Labels, str, str, Any]]:
        for family in self.registry.collect():
            name = metric_name(family.name)
            if family.type == "counter":
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        labels = tuple(sorted(sample.labels.items()))
                        delta = self._delta((sample.name, labels), sample.value)
                        if delta:
                            yield labels, name, "Count", delta
            elif family.type == "histogram":
                sums: dict[Labels, float] = {}
                counts: dict[Labels, float] = {}
                for sample in family.samples:
                    labels = tuple(sorted(sample.labels.items()))
                    if sample.name.endswith("_sum"):
                        sums[labels] = self._delta((sample.name, labels), sample.value)
                    elif sample.name.endswith("_count"):
                        counts[labels] = self._delta((sample.name, labels), sample.value)
                for labels, count in counts.items():
                    if count:
                        mean_ms = sums.get(labels, 0.0) / count * 1000
                        yield labels, name, "Milliseconds", [mean_ms] * min(int(count), _MAX_VALUES)
            elif family.type == "gauge":
                for sample in family.samples:
                    if not math.isnan(sample.value):  # no value (a follower standing by)
                        yield tuple(sorted(sample.labels.items())), name, "None", sample.value


def _document(
    labels: Labels, metrics: dict[str, tuple[str, Any]], timestamp: int
) -> dict[str, Any]:
    dimensions = {_camel(label): value for label, value in labels}
    # With dimensions, also the dimensionless total (what the alarms watch).
    dimension_sets = [list(dimensions), []] if dimensions else [[]]
    return {
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": dimension_sets,
                    "Metrics": [
                        {"Name": name, "Unit": unit} for name, (unit, _) in metrics.items()
                    ],
                }
            ],
        },
        **dimensions,
        **{name: value for name, (_, value) in metrics.items()},
    }


async def report_every(
    stop: asyncio.Event,
    every: float,
    out: TextIO = sys.stdout,
    before: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Every ``every`` seconds until ``stop``, what changed in the metrics as EMF lines on
    ``out``; ``before`` brings the gauges it owns up to date first."""
    exporter = EmfExporter()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
        if before is not None:
            await before()
        exporter.write(out)
