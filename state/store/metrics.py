"""Prometheus metrics of the Redis table store (docs/metrics.md).

Metrics are created against an explicit registry so tests can use a fresh
``CollectorRegistry``; the process-wide default is created once, because
registering the same metric name twice on one registry raises.
"""

from __future__ import annotations

from functools import cache

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["StoreMetrics", "default_metrics"]


#: Redis operations whose failures ``ltv_store_errors_total`` counts.
OPERATIONS = ("read", "prefetch", "claim", "wipe", "standby", "flush", "producer_flush", "clear")


class StoreMetrics:
    """The store's counters, gauge and histogram on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.flush_seconds = Histogram(
            "ltv_store_flush_seconds",
            "Time of one flush of the write-back buffer to Redis, producer flush included.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.dirty_keys = Gauge(
            "ltv_store_dirty_keys",
            "Table keys written but not yet flushed to Redis.",
            registry=registry,
        )
        self.errors = Counter(
            "ltv_store_errors_total",
            "Failed Redis operations of the table store (each retry counts).",
            ["operation"],
            registry=registry,
        )
        # Exported at zero, so the first error of an operation shows in increase().
        for operation in OPERATIONS:
            self.errors.labels(operation)
        self.keys_flushed = Counter(
            "ltv_store_keys_flushed_total",
            "Table keys written to Redis by flushes.",
            registry=registry,
        )
        self.sync_reads = Counter(
            "ltv_store_sync_reads_total",
            "Reads that missed the buffer and cache and blocked on Redis (no prefetch).",
            registry=registry,
        )
        self.fenced_flushes = Counter(
            "ltv_store_fenced_flushes_total",
            "Flushes refused because another worker claimed the partition.",
            registry=registry,
        )


@cache
def default_metrics() -> StoreMetrics:
    """Return the store metrics on the default Prometheus registry."""
    return StoreMetrics(REGISTRY)
