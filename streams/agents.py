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
import weakref
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from faust import StreamT
from faust.streams import _current_event
from faust.types import EventT

from state.envelope import Output
from state.store import RedisStore
from state.store.keys import Index
from state.store.producer import drain
from streams import inactivity
from streams.app import app, customer_store, customers, handled, settings, topics
from streams.metrics import METRICS, NO_LEVEL
from streams.processing import EventType, NextCheck, Record, Result, utc_now
from streams.wiring import build_processor

log = logging.getLogger(__name__)
#: Exit status of a worker whose batch failed half-way (EX_SOFTWARE).
EXIT_BATCH_FAILED = 70

processor = build_processor(settings)
# Held cancellations wait on each purchases partition's progress, counted from
# where its consumption starts.
handled.on_start.append(
    lambda tp, offset: (
        processor.purchases_started(tp.partition, offset)
        if tp.topic == settings.topic_purchases
        else None
    )
)
#: Output topic name of each kind of processor output.
_OUTPUT_TOPICS = {kind: topic.get_topic_name() for kind, topic in topics.outputs().items()}


#: Events handled together: one pipelined Redis read per partition per batch.
BATCH_SIZE = 1000
#: Longest wait for a batch to fill before handling what has arrived (seconds).
BATCH_WINDOW = 0.005
_BATCH_LOCK = asyncio.Lock()


@contextmanager
def _current(event: EventT) -> Iterator[None]:  # type: ignore[type-arg]
    """Make ``event`` Faust's current event, as stream iteration does per event.

    ``take_events`` hands over a batch without setting it, and a table write
    needs it: the changelog record goes to the event's partition (faust #497).
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


async def _consume(kind: EventType, stream: StreamT) -> None:  # type: ignore[type-arg]
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
        batch = asyncio.ensure_future(_process_batch(kind, events))
        try:
            await asyncio.shield(batch)
        except asyncio.CancelledError:
            await asyncio.wait([batch])  # finish it; its outcome is checked below
            if batch.cancelled() or batch.exception() is not None:
                _exit_unacknowledged(kind, batch)
            raise
        except Exception:
            _exit_unacknowledged(kind, batch)


def _exit_unacknowledged(kind: EventType, batch: asyncio.Future[None]) -> NoReturn:
    """End the process before take_events acknowledges a batch that failed half-way."""
    error = None if batch.cancelled() else batch.exception()
    log.critical("%s batch failed half-way: exiting unacknowledged", kind, exc_info=error)
    logging.shutdown()
    os._exit(EXIT_BATCH_FAILED)


async def _process_batch(kind: EventType, events: Sequence[EventT]) -> None:  # type: ignore[type-arg]
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
    async with _BATCH_LOCK:
        await _handle_batch(kind, events)


async def _handle_batch(kind: EventType, events: Sequence[EventT]) -> None:  # type: ignore[type-arg]
    store = customer_store()
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
        with _current(event):  # reads and writes go to the event's partition
            stored = customers.get(message.key) if message.key else None
            result = processor.handle(kind, record, stored, now)
            if message.key and result.state is not None:
                customers[message.key] = result.state
                owed.extend(result.outputs)
                wrote = True
            else:  # nothing stored: a redelivery derives these again
                await _send(result.outputs)
            if message.key:
                # Buffered with the state above: flushed to Redis in one script.
                _file(store, message.key, "schedule", result.next_check)
                _file(store, message.key, "notices", result.notice_at)
        _observe(kind, result, started)
    if wrote:
        # The changelog records of the batch are acknowledged before its
        # events are: also for writes without outputs (a held cancellation).
        await drain(app)
        await _send(owed)
    # The batch's outputs are with the producer: its state writes may now be flushed.
    store.seal()
    handled.mark(event.message for event in events)  # their acks may now be committed


def _file(store: RedisStore, key: bytes, index: Index, check: NextCheck | None) -> None:
    """Set the key's entry in one of the store's indexes (None: leave it)."""
    if check is not None:
        store.schedule(key, None if check.at is None else check.at.timestamp(), index)


async def _send(outputs: Sequence[Output]) -> None:
    for output in outputs:
        # Straight to the producer: the records are bytes already, and
        # Faust's Topic.send wrapping (futures, callbacks, serializers)
        # costs more per record than the send itself.
        await app.producer.send(
            _OUTPUT_TOPICS[output.kind], output.key, output.value, None, None, None
        )


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


@app.agent(topics.purchases)
async def purchases(stream: StreamT) -> None:  # type: ignore[type-arg]
    """Every record of the purchases topic."""
    await _consume("purchase", stream)


@app.agent(topics.cancellations)
async def cancellations(stream: StreamT) -> None:  # type: ignore[type-arg]
    """Every record of the cancellations topic."""
    await _consume("cancellation", stream)


@app.agent(topics.inactivity)
async def inactive_customers(stream: StreamT) -> None:  # type: ignore[type-arg]
    """Due customers sent by the inactivity timer (streams.inactivity)."""
    await _consume("inactivity", stream)


inactivity_timer = inactivity.install(
    app, customer_store, topics.inactivity, processor, METRICS, settings.inactivity_interval
)
