"""Consumer lag, assigned partitions and rebalances (docs/metrics.md).

Faust's own Prometheus sensor is deliberately not used: it mis-measures
rebalances and HTTP latency, and those numbers would reach the dashboard.
Instead a timer samples, per assigned input partition, the broker's end
offset and the inputs' consumer group's committed offset; every new
assignment of the unit of work keeps ``ltv_assigned_partitions`` and
``ltv_rebalances_total`` current.

The arithmetic and the label bookkeeping are plain functions
(:func:`consumer_lags`, :func:`publish_lags`) so they are unit-tested without
Kafka; :func:`install` is the thin Faust wiring.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Set
from typing import Any

import faust
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.types import TP
from prometheus_client import Gauge

from streams.kafka_security import kafka_client
from streams.metrics import Metrics
from streams.unit_of_work import UnitOfWork

__all__ = ["LagMonitor", "consumer_lags", "install", "publish_lags", "retain_partitions"]

log = logging.getLogger(__name__)

#: Seconds between lag samples; matches the Prometheus scrape interval so
#: every scrape sees a fresh value without querying Kafka more than needed.
SAMPLE_INTERVAL = 5.0


def consumer_lags(
    end_offsets: Mapping[TP, int],
    committed: Mapping[TP, int | None],
    earliest: Mapping[TP, int],
) -> dict[TP, int]:
    """Messages not yet committed per partition: end offset minus committed offset.

    A partition without a committed offset is consumed from its earliest
    offset (``consumer_auto_offset_reset="earliest"``), so its whole retained
    log counts as lag. The result is clamped at 0 because the end offset and
    the committed offset are read in two requests and a commit landing between
    them must not show as negative lag. Partitions whose end offset is unknown
    are left out rather than guessed.
    """
    lags = {}
    for tp, end in end_offsets.items():
        start = committed.get(tp)
        if start is None:
            start = earliest.get(tp, 0)
        lags[tp] = max(end - start, 0)
    return lags


def publish_lags(gauge: Gauge, lags: Mapping[TP, int], published: Set[TP]) -> set[TP]:
    """Set one ``{topic, partition}`` child per partition and drop the stale ones.

    A partition moved to another worker must stop exporting from this one,
    or the dashboard would sum a frozen value with the new owner's. Returns
    the partitions now exported, to pass back as ``published`` next time.
    """
    for tp, lag in lags.items():
        gauge.labels(tp.topic, str(tp.partition)).set(lag)
    retain_partitions(gauge, published, lags.keys())
    return set(lags)


def retain_partitions(gauge: Gauge, published: Set[TP], keep: Set[TP]) -> set[TP]:
    """Remove the children of partitions in ``published`` but not in ``keep``.

    Returns the partitions still exported.
    """
    for tp in published - keep:
        gauge.remove(tp.topic, str(tp.partition))
    return set(published & keep)


class LagMonitor:
    """Samples lag of the input partitions the unit of work consumes."""

    def __init__(
        self, app: faust.App, metrics: Metrics, inputs: UnitOfWork, topics: Iterable[str]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.inputs = inputs
        self.topics = frozenset(topics)
        self.published: set[TP] = set()
        self._admin: AIOKafkaAdminClient | None = None

    def watched(self, assigned: Iterable[TP]) -> set[TP]:
        """The assigned partitions of the watched topics."""
        return {tp for tp in assigned if tp.topic in self.topics}

    def on_assignment(self, assigned: Set[TP]) -> None:
        """Count the rebalance, export the new assignment size, drop revoked partitions."""
        watched = self.watched(assigned)
        self.metrics.rebalances.inc()
        self.metrics.assigned_partitions.set(len(watched))
        self.published = retain_partitions(self.metrics.consumer_lag, self.published, watched)

    async def sample(self) -> None:
        """Read end, committed and (where needed) earliest offsets; export the lag."""
        assigned = sorted(self.watched(self.inputs.assignment()))
        consumer = self.inputs.consumer
        if not assigned or consumer is None:
            self.published = publish_lags(self.metrics.consumer_lag, {}, self.published)
            return
        partitions = [TopicPartition(tp.topic, tp.partition) for tp in assigned]
        end = _by_tp(await consumer.end_offsets(partitions))
        committed = await self._committed(partitions)
        uncommitted = [TopicPartition(*tp) for tp in assigned if committed.get(tp) is None]
        earliest = _by_tp(await consumer.beginning_offsets(uncommitted)) if uncommitted else {}
        lags = consumer_lags(end, committed, earliest)
        self.published = publish_lags(self.metrics.consumer_lag, lags, self.published)

    async def _committed(self, partitions: list[TopicPartition]) -> dict[TP, int | None]:
        """The inputs group's committed offsets as the broker's coordinator has them.

        The number ``kafka-consumer-groups.sh`` would show.
        """
        admin = await self._admin_client()
        offsets = await admin.list_consumer_group_offsets(
            self.inputs.group_id, partitions=partitions
        )
        return {
            TP(tp.topic, tp.partition): (meta.offset if meta.offset >= 0 else None)
            for tp, meta in offsets.items()
        }

    async def _admin_client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                client_id=f"{self.app.conf.id}-lag",
                **kafka_client(self.inputs.service.settings),
            )
            await admin.start()
            self._admin = admin
        return self._admin

    async def close(self, *_: Any, **__: Any) -> None:
        """Close the admin connection (connected to ``on_before_shutdown``)."""
        if self._admin is not None:
            admin, self._admin = self._admin, None
            await admin.close()

    async def tick(self) -> None:
        """One timer tick; a failed sample is logged and retried next tick.

        Lag is diagnostic: a broker hiccup must neither crash the worker nor
        leave stale numbers, so the exported partitions keep their last value
        only until the next successful sample.
        """
        try:
            await self.sample()
        except Exception:  # any Kafka/admin error: keep the worker running
            log.warning("consumer lag sample failed", exc_info=True)
            await self.close()


def _by_tp(offsets: Mapping[TopicPartition, int]) -> dict[TP, int]:
    return {TP(tp.topic, tp.partition): offset for tp, offset in offsets.items()}


def install(
    app: faust.App,
    metrics: Metrics,
    inputs: UnitOfWork,
    topics: Iterable[str],
    interval: float = SAMPLE_INTERVAL,
) -> LagMonitor:
    """Attach lag sampling of ``topics`` and tracking of ``inputs``' assignment to ``app``."""
    monitor = LagMonitor(app, metrics, inputs, topics)
    inputs.assignment_listeners.append(monitor.on_assignment)
    app.on_before_shutdown.connect(monitor.close)
    app.timer(interval, name="ltv.consumer_lag")(monitor.tick)
    return monitor
