"""The unit of work: one fetched batch of input records, from fetch to commit.

The worker reads its inputs (purchases, cancellations, feedback, inactivity records)
with its own aiokafka consumer and handles each fetched batch as one unit,
in the steps of ``UnitOfWork.handle``:

1. prefetch the states of every key of the batch in one pipelined round trip;
2. process the records in offset order, buffering each new state, its index
   entries (next check, held-cancellation notice) and its outputs;
3. send the changelog records, then the outputs, as per-partition record
   batches (``streams.record_batches``), awaiting every acknowledgement;
4. seal the batch in the store with the next offset of every input
   partition it covers: a later flush writes states, index entries and
   those source offsets of a partition in one fenced script;
5. commit exactly the offsets processed.

Why this order keeps every guarantee:

* Redis only ever holds states whose changelog records and outputs the
  broker has acknowledged (step 4 after step 3), and the source offsets it
  holds never run ahead of the states stored with them.
* A changelog record carries the outputs its write owes
  (``state.envelope``): a worker killed between steps 3 and 5 leaves
  records the restarted owner restores from the changelog, resending
  what they owe before it consumes any input, and the replayed inputs find
  their events applied.
* Consumption of a partition resumes at the source offsets stored with its
  state (``RedisStore.resume_offsets``), else at the committed offset, else
  at the earliest: nothing is skipped, and what is replayed is recognised by
  the customers' idempotency ledgers. A committed offset written by a
  worker that lost the partition cannot move a new owner past an event,
  because the stored source offsets are fenced with the state.

Which partitions this worker consumes is decided by Faust's consumer group,
which owns the ``customers`` changelog (Faust's table recovery, the store's
claim and fencing). The consumer here is assigned the same partitions of
every input topic once Faust has recovered the table for them
(``on_rebalance_complete``) and gives them up when Faust revokes them
(``on_partitions_revoked``, which waits for the batch in hand). Its offsets
are committed under the group ``<app id>-inputs``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from faust.types import TP
from mode import Service

from state.envelope import Output
from state.store import RedisStore
from state.store.keys import Index
from streams.app import ServiceApp
from streams.kafka_security import kafka_client
from streams.metrics import METRICS, NO_LEVEL
from streams.processing import EventType, NextCheck, Processor, Record, Result, utc_now
from streams.record_batches import OutgoingRecord, RecordBatches

__all__ = ["EXIT_BATCH_FAILED", "UnitOfWork"]

log = logging.getLogger(__name__)
#: Exit status of a worker whose batch failed half-way (EX_SOFTWARE).
EXIT_BATCH_FAILED = 70
#: Most records fetched and handled as one unit.
BATCH_SIZE = 2000
#: Largest record batch sent per output partition (bytes; broker limit 1 MB).
BATCH_BYTES = 512 * 1024
#: Longest wait for records before looking at the assignment again (ms).
FETCH_WAIT_MS = 100
#: Seconds between looks at the assignment with no partitions (woken early
#: by a completed recovery), and while a recovered one waits for the rebalance.
IDLE_WAIT = 1.0
REBALANCE_POLL = 0.02

Batch = Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]
#: Told the input partitions consumed from now on (lag metrics, readiness).
AssignmentListener = Callable[[frozenset[TP]], None]


class UnitOfWork(Service):
    """Consumes the inputs of the partitions this worker owns, one batch at a time."""

    def __init__(self, service: ServiceApp, processor: Processor, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.processor = processor
        settings = service.settings
        self.kinds: dict[str, EventType] = {
            settings.topic_purchases: "purchase",
            settings.topic_cancellations: "cancellation",
            settings.topic_feedback: "feedback",
            settings.topic_inactivity: "inactivity",
        }
        self.output_topics = service.topics.output_names()
        self.changelog = service.customers.changelog_topic.get_topic_name()
        self.group_id = f"{settings.app_id}-inputs"
        #: Partitions (numbers) consumed right now, of every input topic.
        self.partitions: frozenset[int] = frozenset()
        #: Partitions Faust finished recovering for; taken up by the loop.
        self.recovered: frozenset[int] | None = None
        self.assignment_listeners: list[AssignmentListener] = []
        #: Held by a batch from fetch to commit, and by a revocation meanwhile.
        self.lock = asyncio.Lock()
        self.wake = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None
        #: The changelog records and outputs of a batch go out through this.
        self.batches: RecordBatches | None = None
        app = service.app
        app.on_partitions_revoked.connect(self.on_partitions_revoked)  # type: ignore[arg-type]
        app.on_rebalance_complete.connect(self.on_rebalance_complete)  # type: ignore[arg-type]

    def assignment(self) -> frozenset[TP]:
        """The input partitions consumed right now."""
        return frozenset(TP(topic, p) for topic in self.kinds for p in self.partitions)

    # -- lifecycle -------------------------------------------------------------

    async def on_start(self) -> None:
        conf = self.service.app.conf
        connection = kafka_client(self.service.settings)
        self.consumer = AIOKafkaConsumer(
            client_id=f"{conf.id}-inputs",
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=BATCH_SIZE,
            **connection,
        )
        await self.consumer.start()
        producer = AIOKafkaProducer(
            client_id=f"{conf.id}-outputs",
            acks="all",
            enable_idempotence=True,
            max_batch_size=min(BATCH_BYTES, conf.producer_max_request_size),
            max_request_size=conf.producer_max_request_size,
            **connection,
        )
        await producer.start()
        self.batches = RecordBatches(producer)

    async def on_stop(self) -> None:
        """Finish the batch in hand (its commit included), then close the consumer."""
        async with self.lock:
            consumer, self.consumer = self.consumer, None
            batches, self.batches = self.batches, None
            self.partitions = frozenset()
            if consumer is not None:
                await consumer.stop()
            if batches is not None:
                await batches.producer.stop()

    @Service.task
    async def _run(self) -> None:
        while not self.should_stop:
            await self._follow_assignment()
            consumer = self.consumer
            if consumer is None or not self.partitions:
                self.wake.clear()
                # Faust ends a rebalance (``app.rebalancing``) without a signal:
                # a recovered assignment waiting for that end is looked at often.
                timeout = IDLE_WAIT if self.recovered is None else REBALANCE_POLL
                await self.wait_for_stopped(self.wake, timeout=timeout)  # type: ignore[arg-type]
                continue
            async with self.lock:
                if self.should_stop or not self.partitions:
                    continue
                batch = await consumer.getmany(timeout_ms=FETCH_WAIT_MS, max_records=BATCH_SIZE)
                if batch:
                    await self._shielded(batch)

    async def _shielded(self, batch: Batch) -> None:
        """Run ``handle`` to its end even when the worker stops meanwhile.

        A batch that fails half-way has states buffered whose records were
        not all acknowledged: the process ends before anything seals them,
        and the restarted worker replays the batch.
        """
        work = asyncio.ensure_future(self.handle(batch))
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            await asyncio.wait([work])
            if work.cancelled() or work.exception() is not None:
                _exit_unfinished(work)
            raise
        except Exception:
            _exit_unfinished(work)

    # -- the unit of work --------------------------------------------------------

    async def handle(self, batch: Batch) -> None:
        """Handle one fetched batch (see the module doc for the steps)."""
        store = self.service.customer_store()
        consumer = self.consumer
        assert consumer is not None
        # 1. Prefetch every state the batch reads, in one pipelined round trip.
        wanted: dict[int, list[bytes]] = defaultdict(list)
        for tp, records in batch.items():
            wanted[tp.partition].extend(r.key for r in records if r.key)
        await store.prefetch(wanted)
        # 2. Process in offset order; buffer states, index entries and outputs.
        now = utc_now()
        changelog: list[tuple[int, bytes, bytes]] = []
        outputs: list[Output] = []
        for tp, records in batch.items():
            kind = self.kinds[tp.topic]
            METRICS.events_consumed.labels(tp.topic).inc(len(records))
            for record in records:
                self._process(kind, record, store, now, changelog, outputs)
        # 3. Send changelog records, then outputs; await every acknowledgement.
        await self._send(store, changelog, outputs)
        # 4. Seal: states, index entries and source offsets may now be flushed.
        processed = {tp: records[-1].offset + 1 for tp, records in batch.items()}
        for tp, offset in processed.items():
            store.advance(tp.partition, tp.topic, offset)
        store.seal()
        # 5. Commit exactly what was processed.
        await consumer.commit(processed)

    def _process(
        self,
        kind: EventType,
        message: ConsumerRecord[bytes, bytes],
        store: RedisStore,
        now: datetime,
        changelog: list[tuple[int, bytes, bytes]],
        outputs: list[Output],
    ) -> None:
        started = time.perf_counter()
        key, partition = message.key, message.partition
        record = Record(message.topic, partition, message.offset, key, message.value or b"")
        stored = store.read(partition, key) if key else None
        result = self.processor.handle(kind, record, stored, now)
        if key:
            if result.state is not None:
                store.put(partition, key, result.state)
                changelog.append((partition, key, result.state))
            _file(store, key, partition, "schedule", result.next_check)
            _file(store, key, partition, "notices", result.notice_at)
        outputs.extend(result.outputs)
        _observe(kind, result, started)

    async def _send(
        self,
        store: RedisStore,
        changelog: Iterable[tuple[int, bytes, bytes]],
        outputs: Iterable[Output],
    ) -> None:
        """Send the batch's changelog records, then its outputs; await every ack.

        Outputs wait for the changelog: a published update is then always
        backed by a durable value, so a redelivered event never renders the
        same version anew (with another ``as_of``). Outputs the changelog
        records owe but that a crash kept from leaving are resent by
        recovery from those records.
        """
        assert self.batches is not None
        written = await self.batches.send(
            OutgoingRecord(self.changelog, p, key, value) for p, key, value in changelog
        )
        for tp, offset in written.items():
            store.set_persisted_offset(TP(tp.topic, tp.partition), offset)
        topics = self.output_topics
        await self.batches.send(
            OutgoingRecord(topic, None, o.key, o.value) for o in outputs for topic in topics[o.kind]
        )

    # -- following Faust's assignment ---------------------------------------------

    async def on_partitions_revoked(self, sender: Any, revoked: set[TP], **_: Any) -> None:
        """Stop consuming revoked partitions once the batch in hand is committed."""
        self.recovered = None  # a recovery still to complete is for an older generation
        lost = {tp.partition for tp in revoked if tp.topic == self.changelog}
        if not lost:
            return
        async with self.lock:
            self.recovered = None
            await self._assign(self.partitions - lost)
            # Persist what is sealed now that the last batch of these is.
            await self.service.customer_store().flush(lost)

    async def on_rebalance_complete(self, sender: Any, **_: Any) -> None:
        """Faust recovered the table for its new assignment: consume those partitions."""
        app = self.service.app
        self.recovered = frozenset(
            tp.partition for tp in app.assignor.assigned_actives() if tp.topic == self.changelog
        )
        self.wake.set()

    async def _follow_assignment(self) -> None:
        recovered = self.recovered
        if recovered is None or self.service.app.rebalancing:
            return
        async with self.lock:
            if self.recovered is recovered:
                self.recovered = None
                # Recovery queued the owed outputs of the changelog records
                # Redis did not cover: they leave, acknowledged, before any
                # output of new input (a customer's updates stay in version
                # order), and Redis then covers what was recovered.
                await self.service.customer_store().flush(recovered)
                await self._assign(recovered)

    async def _assign(self, partitions: Iterable[int]) -> None:
        """Consume ``partitions`` of every input, each from where its state says."""
        consumer = self.consumer
        if consumer is None:
            return
        self.partitions = frozenset(partitions)
        tps = [TopicPartition(topic, p) for topic in self.kinds for p in sorted(self.partitions)]
        consumer.assign(tps)
        store = self.service.customer_store()
        for p in self.partitions:
            for topic, offset in store.resume_offsets(p).items():
                if topic in self.kinds:
                    consumer.seek(TopicPartition(topic, p), offset)
        purchases = self.service.settings.topic_purchases
        for tp in tps:
            start = await consumer.position(tp)
            if tp.topic == purchases:
                self.processor.purchases_started(tp.partition, start)
        log.info("consuming input partitions %s", sorted(self.partitions))
        assignment = self.assignment()
        for listener in self.assignment_listeners:
            listener(assignment)


def _exit_unfinished(work: asyncio.Future[None]) -> NoReturn:
    """End the process before anything seals the writes of a batch that failed."""
    error = None if work.cancelled() else work.exception()
    log.critical("batch failed half-way: exiting uncommitted", exc_info=error)
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
