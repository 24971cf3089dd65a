"""Faust agents: move records between Kafka, the ``customers`` table and the processor.

All decisions live in ``streams.processing``; this module only reads a
record, looks up the stored state, writes the new state and publishes what
the processor returned, counting everything in the metrics.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn

from faust import StreamT
from faust.types import TP, EventT

from state.envelope import Output
from state.store import RedisStore
from state.store.keys import Index
from state.store.producer import drain
from streams.app import ServiceApp
from streams.metrics import METRICS, NO_LEVEL
from streams.processing import EventType, NextCheck, Processor, Record, Result, utc_now

log = logging.getLogger(__name__)
#: Exit status of a worker whose batch failed half-way (EX_SOFTWARE).
EXIT_BATCH_FAILED = 70
#: Events handled together: one pipelined Redis read per partition per batch.
BATCH_SIZE = 1000
#: Longest wait for a batch to fill before handling what has arrived (seconds).
BATCH_WINDOW = 0.005


class Agents:
    """The worker's three agents (purchases, cancellations, inactivity) and what they share."""

    def __init__(self, service: ServiceApp, processor: Processor) -> None:
        self.service = service
        self.processor = processor
        #: Output topic name of each kind of processor output.
        self.output_topics = {
            kind: topic.get_topic_name() for kind, topic in service.topics.outputs().items()
        }
        #: One batch at a time across the agents (see ``process_batch``).
        self.lock = asyncio.Lock()

    def install(self) -> None:
        """Attach the agents to the app and start held cancellations' progress at assignment."""
        app, topics = self.service.app, self.service.topics
        self.service.handled.on_start.append(self.partition_started)
        for name, kind, topic in (
            ("purchases", "purchase", topics.purchases),
            ("cancellations", "cancellation", topics.cancellations),
            ("inactive_customers", "inactivity", topics.inactivity),
        ):
            app.agent(topic, name=f"streams.agents.{name}")(self.consumer(kind))  # type: ignore[arg-type]

    def partition_started(self, tp: TP, offset: int) -> None:
        """Held cancellations wait on each purchases partition's progress from here."""
        if tp.topic == self.service.settings.topic_purchases:
            self.processor.purchases_started(tp.partition, offset)

    def consumer(self, kind: EventType) -> Callable[[StreamT], Awaitable[None]]:  # type: ignore[type-arg]
        """The agent function of input ``kind``."""

        async def agent(stream: StreamT) -> None:  # type: ignore[type-arg]
            await self.consume(kind, stream)

        agent.__doc__ = f"Every {kind} record of its input topic."
        return agent

    async def consume(self, kind: EventType, stream: StreamT) -> None:  # type: ignore[type-arg]
        """Handle the stream batch by batch; a batch is acknowledged only once handled.

        ``take_events`` acknowledges the whole batch whenever the loop body exits,
        also half-way through (the agent cancelled by a worker stop, or an error),
        and Faust then commits those offsets: the unhandled rest would be lost.
        So a cancelled batch is finished first, and a batch that fails ends the
        process before anything more is acknowledged; the restarted worker
        replays from the last commit.
        """
        # take_events exists on faust.Stream, not on the StreamT protocol.
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WINDOW):  # type: ignore[attr-defined]
            batch = asyncio.ensure_future(self.process_batch(kind, events))
            try:
                await asyncio.shield(batch)
            except asyncio.CancelledError:
                await asyncio.wait([batch])  # finish it; its outcome is checked below
                if batch.cancelled() or batch.exception() is not None:
                    _exit_unacknowledged(kind, batch)
                raise
            except Exception:
                _exit_unacknowledged(kind, batch)

    async def process_batch(self, kind: EventType, events: Sequence[EventT]) -> None:  # type: ignore[type-arg]
        """Handle a batch in arrival order; the events are acked when this returns.

        Outputs of a write are sent only once the batch's changelog records are
        acknowledged: a published update is always backed by a durable value, so a
        redelivery never renders the same version anew (possibly differently,
        when the topics interleave otherwise). Outputs acknowledged late are owed
        by the value (``state.envelope``) and resent by recovery.

        One batch at a time across the agents (purchases, cancellations,
        inactivity): a customer's outputs then leave in the order of its writes,
        and the store's seal never covers another batch's writes whose outputs
        are still waiting for the drain.
        """
        async with self.lock:
            await self.handle_batch(kind, events)

    async def handle_batch(self, kind: EventType, events: Sequence[EventT]) -> None:  # type: ignore[type-arg]
        service, processor = self.service, self.processor
        customers = service.customers
        store = service.customer_store()
        wanted: dict[int, list[bytes]] = defaultdict(list)
        for event in events:
            if event.message.key:
                wanted[event.message.partition].append(event.message.key)
        await asyncio.gather(*(store.prefetch(p, keys) for p, keys in wanted.items()))
        now = utc_now()
        owed: list[Output] = []
        wrote = False
        for event in events:
            message = event.message
            started = time.perf_counter()
            METRICS.events_consumed.labels(message.topic).inc()
            record = Record(
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                key=message.key,
                value=message.value or b"",
            )
            key, partition = message.key, message.partition
            stored = store.read(partition, key) if key else None
            result = processor.handle(kind, record, stored, now)
            if key and result.state is not None:
                # A table write on public APIs: the changelog record (acked
                # before the batch's outputs leave, below) and the store's buffer.
                customers.send_changelog(partition, key, result.state)
                store.put(partition, key, result.state)
                owed.extend(result.outputs)
                wrote = True
            else:  # nothing stored: a redelivery derives these again
                await self.send(result.outputs)
            if key:
                # Buffered with the state above: flushed to Redis in one script.
                _file(store, key, partition, "schedule", result.next_check)
                _file(store, key, partition, "notices", result.notice_at)
            _observe(kind, result, started)
        if wrote:
            # The changelog records of the batch are acknowledged before its
            # events are: also for writes without outputs (a held cancellation).
            await drain(service.app)
            await self.send(owed)
        # The batch's outputs are with the producer: its state writes may now be flushed.
        store.seal()
        service.handled.mark(event.message for event in events)  # their acks may now be committed

    async def send(self, outputs: Sequence[Output]) -> None:
        for output in outputs:
            # Straight to the producer: the records are bytes already, and
            # Faust's Topic.send wrapping (futures, callbacks, serializers)
            # costs more per record than the send itself.
            await self.service.app.producer.send(
                self.output_topics[output.kind], output.key, output.value, None, None, None
            )


def _exit_unacknowledged(kind: EventType, batch: asyncio.Future[None]) -> NoReturn:
    """End the process before take_events acknowledges a batch that failed half-way."""
    error = None if batch.cancelled() else batch.exception()
    log.critical("%s batch failed half-way: exiting unacknowledged", kind, exc_info=error)
    logging.shutdown()
    os._exit(EXIT_BATCH_FAILED)


def _file(
    store: RedisStore, key: bytes, partition: int, index: Index, check: NextCheck | None
) -> None:
    """Set the key's entry in one of the store's indexes (None: leave it)."""
    if check is not None:
        when = None if check.at is None else check.at.timestamp()
        store.schedule(key, when, index, partition)


def _observe(kind: EventType, result: Result, started: float) -> None:
    METRICS.events_processed.labels(kind, result.outcome).inc()
    for code in result.dead_letter_codes:
        METRICS.dead_letters.labels(code).inc()
    updates = sum(1 for o in result.outputs if o.kind == "update")
    if updates:
        METRICS.updates_emitted.inc(updates)
    if result.total_ltv is not None:
        METRICS.customer_total_ltv.observe(float(result.total_ltv))
    if result.churn is not None:
        METRICS.churn_transitions.labels(result.churn[0] or NO_LEVEL, result.churn[1]).inc()
    now = time.time()
    if result.occurred_at is not None:
        METRICS.event_lag_seconds.observe(max(0.0, now - result.occurred_at.timestamp()))
    METRICS.processing_seconds.observe(time.perf_counter() - started)
