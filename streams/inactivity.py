"""The inactivity timer: work due without an input event of the customer.

Cost per tick. Every customer whose state is written gets an entry in its
partition's schedule (a Redis sorted set kept by the store, written in the
same atomic flush as the state): the instant its churn-risk level would next
change with no new order (``ltv.schedule``). A customer holding a
cancellation also has an entry in the partition's ``notices`` index: the
event time the purchases partition must pass before the cancellation is
reported as unknown_order (``streams.processing``). A tick asks each active
partition only for the entries already due, the schedule against the clock
and the notices against the partition's purchases progress (ZRANGEBYSCORE,
O(log n + due)), so its cost grows with the customers that actually change,
not with all customers. ``ltv_inactivity_checks_total`` counts the customers
handed out.

Why an internal topic. The state must only change on the partition's owner,
in the order of its inputs, inside a unit of work. So the timer does not
revalue anyone itself: it publishes one small record per due customer (key
= customer id, value = ``{"due": t}``) to ``<app_id>-inactivity``, on the
customer's table partition, and the unit of work (``streams.unit_of_work``)
handles it like any event (prefetch, ``Processor.handle("inactivity", ...)``,
table write with the new schedule entry, sends, seal, commit).

Delivery is at-least-once. The same script that reads the due entries moves
them ``RETRY_SECONDS`` ahead (of the clock, or of the purchases progress for
notices), so the next ticks do not send them again while their records are
on the way; if a record is lost (crash before it is produced or consumed)
the entry falls due again after that delay. A
duplicate record is harmless: the handler finds the level unchanged, sends
nothing and writes the correct entry again.

Clock. The processor's clock: the wall clock, or with ``LTV_CLOCK=event`` the
worker's event-time watermark (the newest ``occurred_at`` this process has
seen, over all its partitions), which is also how tests move time. In event
mode the timer waits for the first event after a start, and retries fall due
when event time has moved ``RETRY_SECONDS`` on.

Not covered: the indexes are not in the changelog, so a partition rebuilt
from the changelog (Redis lost) has entries only for customers written
since (the store files every recovered customer as due in the schedule, and
that look re-files its notices entry); a new model changes the levels of
customers whose entries were computed with the old one only when those
entries fall due (moving them is the model-refit transition's job). The
purchases progress lives in the process: after a restart or a rebalance a
notice waits until the new owner has read a purchase of the partition past
it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import faust
import orjson

from state.store import RedisStore
from streams.metrics import Metrics
from streams.processing import Processor, utc_now

__all__ = ["BATCH", "RETRY_SECONDS", "InactivityTimer", "install"]

log = logging.getLogger(__name__)

#: Most customers one tick hands out per partition; the rest wait for the next tick.
BATCH = 1000
#: Delay after which a handed-out customer falls due again if its record was lost.
RETRY_SECONDS = 300.0


class InactivityTimer:
    """Sends one internal record per due customer of the worker's active partitions."""

    def __init__(
        self,
        store: Callable[[], RedisStore],
        topic: faust.TopicT,
        processor: Processor,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.topic = topic
        self.processor = processor
        self.metrics = metrics

    async def tick(self) -> int:
        """Hand out every due customer (up to BATCH per partition); return how many."""
        processor = self.processor
        if processor.event_clock and processor.watermark is None:
            return 0  # event time unknown until this worker sees an event
        started = time.perf_counter()
        clock = processor.clock(utc_now()).timestamp()
        store = self.store()
        sent = 0
        value = orjson.dumps({"due": clock})
        for partition in store.active_partitions():
            due = await store.due(partition, clock, BATCH, clock + RETRY_SECONDS)
            progress = processor.purchases_progress(partition)
            if progress is not None:
                until = progress.timestamp()
                held = await store.due(partition, until, BATCH, until + RETRY_SECONDS, "notices")
                due = list(dict.fromkeys([*due, *held]))  # one record per customer
            for key in due:
                await self.topic.send(key=key, value=value, partition=partition)
            sent += len(due)
        self.metrics.inactivity_checks.inc(sent)
        self.metrics.inactivity_tick_seconds.observe(time.perf_counter() - started)
        return sent

    async def safe_tick(self) -> None:
        """A tick that logs and waits for the next one on failure (Redis, Kafka)."""
        try:
            await self.tick()
        except Exception:  # the entries stay due: the next tick hands them out
            log.warning("inactivity tick failed", exc_info=True)


def install(
    app: faust.App,
    store: Callable[[], RedisStore],
    topic: faust.TopicT,
    processor: Processor,
    metrics: Metrics,
    interval: float,
) -> InactivityTimer:
    """Attach the timer to ``app`` (every ``interval`` seconds, on every worker)."""
    timer = InactivityTimer(store, topic, processor, metrics)
    app.timer(interval, name="ltv.inactivity")(timer.safe_tick)
    return timer
