"""Faust agents: one per input kind, each processing the batches of its kind.

The unit of work (``streams.unit_of_work``) fetches and commits; between
the two it hands each kind's records to that kind's agent as one ``Work``
item on an in-memory Faust channel and awaits it. The agent runs every
record through the processor, buffers the new states and index entries in
the store, and collects what the batch must send: changelog records and
outputs. All decisions live in ``streams.processing``.

The channels carry one item per kind per batch, so Faust's per-message
delivery costs next to nothing here, and no Kafka offset is involved:
acknowledging and committing are the unit of work's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import ConsumerRecord
from faust import StreamT
from faust.types import AgentT

from state.envelope import Output
from state.store import RedisStore
from state.store.keys import Index
from streams.app import ServiceApp
from streams.metrics import METRICS, NO_LEVEL
from streams.processing import EventType, NextCheck, Processor, Record, Result

__all__ = ["Agents", "Work"]

#: A changelog record of the ``customers`` table: partition, key, value.
ChangelogRecord = tuple[int, bytes, bytes]


@dataclass
class Work:
    """The records of one input kind in one batch, and what handling them yields."""

    kind: EventType
    records: list[ConsumerRecord[bytes, bytes]]
    now: datetime
    changelog: list[ChangelogRecord] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Agents:
    """The worker's three agents (purchases, cancellations, inactivity records)."""

    def __init__(self, service: ServiceApp, processor: Processor) -> None:
        self.service = service
        self.processor = processor
        self.by_kind: dict[EventType, AgentT] = {}  # type: ignore[type-arg]

    def install(self) -> None:
        """Attach one agent per input kind to the app, each on its own channel."""
        app = self.service.app
        kinds: tuple[tuple[str, EventType], ...] = (
            ("purchases", "purchase"),
            ("cancellations", "cancellation"),
            ("inactive_customers", "inactivity"),
        )
        for name, kind in kinds:
            agent = app.agent(app.channel(), name=f"streams.agents.{name}")
            self.by_kind[kind] = agent(self._agent)  # type: ignore[arg-type]

    async def handle(self, work: Work) -> None:
        """Have the agent of ``work.kind`` process it; raise what it raised."""
        await self.by_kind[work.kind].send(value=work)
        await work.done

    async def _agent(self, stream: StreamT) -> None:  # type: ignore[type-arg]
        """Every batch of its kind; nothing to acknowledge (see the module doc)."""
        work: Work
        # noack exists on faust.Stream, not on the StreamT protocol.
        async for work in stream.noack():  # type: ignore[attr-defined]
            try:
                self.process(work)
            except Exception as exc:  # the unit of work decides what a failure means
                work.done.set_exception(exc)
            else:
                work.done.set_result(None)

    def process(self, work: Work) -> None:
        """Run ``work``'s records through the processor, in offset order."""
        store = self.service.customer_store()
        processor, kind, now = self.processor, work.kind, work.now
        for message in work.records:
            started = time.perf_counter()
            key, partition = message.key, message.partition
            record = Record(message.topic, partition, message.offset, key, message.value or b"")
            stored = store.read(partition, key) if key else None
            result = processor.handle(kind, record, stored, now)
            if key:
                if result.state is not None:
                    store.put(partition, key, result.state)
                    work.changelog.append((partition, key, result.state))
                _file(store, key, partition, "schedule", result.next_check)
                _file(store, key, partition, "notices", result.notice_at)
            work.outputs.extend(result.outputs)
            _observe(kind, result, started)


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
