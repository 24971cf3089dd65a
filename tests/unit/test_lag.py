"""Consumer-lag arithmetic and label bookkeeping of streams.lag, without Kafka."""

from __future__ import annotations

from typing import Any, cast

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry

from streams.lag import LagMonitor, consumer_lags, publish_lags, retain_partitions
from streams.metrics import Metrics
from streams.unit_of_work import UnitOfWork

P0, P1, P2 = TP("orders.purchases", 0), TP("orders.purchases", 1), TP("orders.cancellations", 0)


def _exported(registry: CollectorRegistry, name: str) -> dict[tuple[str, ...], float]:
    """Samples of one metric family as {label values: value}."""
    return {
        tuple(sample.labels.values()): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name
    }


def test_lag_is_end_minus_committed() -> None:
    assert consumer_lags({P0: 120, P1: 7}, {P0: 100, P1: 7}, {}) == {P0: 20, P1: 0}


def test_uncommitted_partition_counts_from_earliest_offset() -> None:
    assert consumer_lags({P0: 50}, {P0: None}, {P0: 30}) == {P0: 20}
    assert consumer_lags({P0: 50}, {}, {}) == {P0: 50}


def test_commit_racing_ahead_of_end_offset_is_clamped_at_zero() -> None:
    assert consumer_lags({P0: 10}, {P0: 12}, {}) == {P0: 0}


def test_partition_without_end_offset_is_not_guessed() -> None:
    assert consumer_lags({P0: 10}, {P0: 5, P1: 3}, {}) == {P0: 5}


def test_publish_sets_values_and_removes_partitions_no_longer_present() -> None:
    metrics = Metrics(CollectorRegistry())
    published = publish_lags(metrics.consumer_lag, {P0: 3, P1: 4}, set())
    assert _exported(metrics.registry, "ltv_consumer_lag_messages") == {
        ("orders.purchases", "0"): 3.0,
        ("orders.purchases", "1"): 4.0,
    }
    published = publish_lags(metrics.consumer_lag, {P1: 9, P2: 1}, published)
    assert published == {P1, P2}
    assert _exported(metrics.registry, "ltv_consumer_lag_messages") == {
        ("orders.purchases", "1"): 9.0,
        ("orders.cancellations", "0"): 1.0,
    }


def test_retain_drops_only_revoked_partitions() -> None:
    metrics = Metrics(CollectorRegistry())
    published = publish_lags(metrics.consumer_lag, {P0: 3, P1: 4}, set())
    assert retain_partitions(metrics.consumer_lag, published, {P1, P2}) == {P1}
    assert _exported(metrics.registry, "ltv_consumer_lag_messages") == {
        ("orders.purchases", "1"): 4.0
    }


def test_assignment_counts_rebalances_and_input_partitions_only() -> None:
    metrics = Metrics(CollectorRegistry())
    # on_assignment touches neither the app nor the unit of work.
    app = cast(faust.App, cast(Any, object()))
    inputs = cast(UnitOfWork, cast(Any, object()))
    monitor = LagMonitor(app, metrics, inputs, ["orders.purchases", "orders.cancellations"])
    monitor.published = publish_lags(metrics.consumer_lag, {P0: 3, P1: 4}, set())
    changelog = TP("ltv-stream-customers-changelog", 0)

    monitor.on_assignment({P1, P2, changelog})
    assert _exported(metrics.registry, "ltv_assigned_partitions") == {(): 2.0}
    assert _exported(metrics.registry, "ltv_rebalances_total") == {(): 1.0}
    assert _exported(metrics.registry, "ltv_consumer_lag_messages") == {
        ("orders.purchases", "1"): 4.0
    }

    monitor.on_assignment(set())
    assert _exported(metrics.registry, "ltv_assigned_partitions") == {(): 0.0}
    assert _exported(metrics.registry, "ltv_rebalances_total") == {(): 2.0}
    assert _exported(metrics.registry, "ltv_consumer_lag_messages") == {}
