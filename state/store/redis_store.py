"""Faust table store kept in Redis, with a write-back buffer and fencing.

Layout (see ``keys``): per table partition one hash of key -> value and one
metadata hash with the fencing ``epoch`` and the last applied changelog
``offset``, all under one hash tag, so it works on Redis Cluster.

Recovery. ``persisted_offset(tp)`` returns the offset stored with the data,
so Faust replays only the changelog records after it: with Redis intact a
restart reads (almost) nothing, whatever the state size; with Redis emptied
the offset is gone and Faust rebuilds the partition from the whole
changelog through ``apply_changelog_batch``. When the stored offset lies
above the changelog's last offset (faust #158: topics recreated, store
kept) the partition is stale: it is wiped with a warning and rebuilt.

Exactly-once in state -- the choice. The store keeps CHANGELOG offsets, not
source offsets, and relies on two facts: (1) changelog records carry full
values, so replaying any suffix of the changelog over older data converges
to the newest values; (2) the app recognises an input event that is
replayed after a crash (our values carry the highest source offset they
include, ``state.envelope``, and the customer state an idempotency ledger),
so a replay changes nothing. The invariant the store keeps is: *Redis only
ever holds values whose changelog records and whose outputs the broker has
acknowledged, and the stored offset never exceeds the offset of a record
whose value is not yet in Redis.* A flush therefore:

1. seals the buffer (``seal()``; called by the app once the changelog
   records and outputs of a batch's writes are acknowledged) and notes the
   changelog offset acknowledged at that moment -- a lower bound of what
   the sealed writes cover;
2. awaits the outputs resent for recovered records (``Outbox``); a store
   whose user never seals awaits ``app.producer.flush()`` instead;
3. writes the sealed values and the noted offset in one Lua script per
   partition (large partitions in chunks, the offset with the last chunk:
   data ahead of its offset is harmless by fact 1).

Crash windows (kill -9): before step 3, Redis has the previous flush and its
offset; the changelog tail after it is replayed, plus input events whose
source offsets were not committed (no-ops by the ledger). Between chunks of
step 3: data partly newer than the stored offset; replay converges. After
step 3: nothing to replay beyond the noted offset. In no window does Redis
hold the effect of an event whose output could be lost. The one window a
flush cannot close is inside Faust: the changelog record of a write may be
acknowledged while the output of the same event is not (two independent
records), and the replayed input then publishes nothing. A table with an
``outbox`` option (``state.store.outbox``) closes it: its values carry the
outputs they owe, and every changelog record restored by recovery has them
resent before it can reach Redis. Until a sealed
write is flushed, a revoked or stopped worker drops nothing that matters: it
is in the acknowledged changelog and the new owner replays it.

Sealing mode. A store whose user never calls ``seal`` seals at each flush,
after ``app.producer.flush()``: Faust's producer buffer may still hold a
record then (its flush can return before the last queued record reaches the
client), so Redis may briefly run ahead of the changelog, which a Redis
loss in that moment would expose. With the ``explicit_seal`` option (or
once ``seal`` is called), only explicitly sealed writes are flushed, and
the caller has awaited their records.

Source progress. ``advance(partition, source, offset)`` buffers the next
offset of an input that the partition's writes cover; it is sealed and
stored with them (``resume_offsets`` reads it back at the next claim), so
Redis says an input offset was consumed only together with its effect.

Fencing. On every assignment the store claims each active partition with
HINCRBY on its epoch (one script returning the new epoch and the stored
offset). Every write script checks the epoch, so once a new owner has
claimed, a zombie's flush is refused: it is dropped and logged, and the
store forgets the partition (its data is in the changelog anyway).

Secondary indexes (``keys.INDEXES``). ``schedule(key, when, index)`` puts
the table key into the partition's sorted set of that index with score
``when`` (``None`` removes it). The entry is buffered in the same generation
as the key's value and written by the same WRITE script, so Redis never
holds a value without the index entries computed with it, or the reverse,
whatever the crash. ``due()`` hands out the keys whose score has passed (and
pushes them back by a retry delay in the same script); its cost is
O(log n + due), not O(n). The indexes are not in the changelog: a partition
rebuilt from the changelog has none until its customers are written again
(see streams.inactivity).

Sums (``sums``). With the ``contributions`` option each value carries what
it adds to its partition's integer totals; a flush stores the contribution
beside the data and moves the totals by the difference in the same WRITE
script, so the totals always equal the sum over the stored values, through
replays, chunks, wipes and rebuilds from the changelog.

Standby replicas are not needed with a shared Redis (set
``table_standby_replicas=0``); if Faust assigns some anyway, their offsets
are read from Redis so Faust skips the changelog, and their records are
ignored.

Failures. Redis errors are retried with exponential backoff and counted in
``ltv_store_errors_total{operation}``. While Redis is down the buffer grows
up to ``max_dirty`` keys, then ``prefetch`` blocks, so the app stops
consuming instead of dropping data; ``healthy``/``ready`` report it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import redis.exceptions
from faust.stores.base import SerializedStore
from faust.streams import current_event
from faust.types import TP, AppT, CollectionT, EventT
from mode import Service
from yarl import URL

from state.store.buffer import CleanCache, PartitionBuffer, Snapshot
from state.store.config import StoreConfig, mask_url
from state.store.keys import INDEXES, OFFSET_FIELD, SOURCE_PREFIX, Index, KeyLayout
from state.store.metrics import StoreMetrics, default_metrics
from state.store.outbox import Outbox
from state.store.partition import OwnedPartition
from state.store.scripts import CLAIM, DUE, WIPE, WRITE, Script
from state.store.sums import Contributions

__all__ = ["PartitionFenced", "RedisStore"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Errors after which the same command may succeed: retried with backoff.
#: Prefetch rounds per batch at most: each re-reads only what a concurrent
#: flush made stale, and flushes are spaced, so a second round is rare and
#: a third rarer still; past the last, a missing key is read in the batch.
PREFETCH_ROUNDS = 4

RETRYABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MasterDownError,
    OSError,
)
_MAX_BACKOFF = 5.0


class PartitionFenced(Exception):
    """Another worker claimed the partition: this worker's write was refused."""


def _to_offset(raw: Any) -> int | None:
    return None if raw is None else int(raw)


def _as_bytes(raw: Any) -> bytes | None:
    """Narrow a reply of a ``decode_responses=False`` client."""
    assert raw is None or isinstance(raw, bytes)
    return raw


class RedisStore(SerializedStore):  # type: ignore[type-arg]
    """Faust store for ``redis://``, ``rediss://`` and ``redis+cluster://``.

    Extra API for the app: ``prefetch``, ``seal``, ``flush``, ``healthy``,
    ``ready``, ``schedule``, ``due``, ``active_partitions``. Table options
    (``Table(options=...)``): ``metrics`` -- a :class:`StoreMetrics`
    (default: on the default registry); ``schedule_recovered`` -- when true,
    every key recovered from the changelog is filed in the schedule as due
    at once (a deleted key leaves it), because the schedule itself has no
    changelog: after Redis lost a partition, its entries are rebuilt by the
    app's next look at each key; ``outbox`` -- an
    :class:`~state.store.outbox.Outbox`: values carry the outputs they owe
    (Redis keeps ``strip(value)``; recovery resends them); ``contributions``
    -- a :class:`~state.store.sums.Contributions`: values carry what they add
    to the partition's sums, which every flush keeps exact (``state.store.sums``).
    """

    def __init__(self, url: str | URL, app: AppT, table: CollectionT, **kwargs: Any) -> None:
        super().__init__(url, app, table, **kwargs)
        self.config = StoreConfig.from_url(url)
        self.layout = KeyLayout(app.conf.id, self.table_name)
        options = self.options or {}
        self.metrics: StoreMetrics = options.get("metrics") or default_metrics()
        self._schedule_recovered = bool(options.get("schedule_recovered", False))
        self._outbox: Outbox | None = options.get("outbox")
        self._contributions: Contributions | None = options.get("contributions")
        self._sync = self.config.sync_client()
        self._async = self.config.async_client()
        #: The partitions this worker owns, by number (``OwnedPartition``).
        self._owned: dict[int, OwnedPartition] = {}
        #: Stored changelog offsets of standby partitions (Faust asks for them).
        self._standby_offsets: dict[TP, int | None] = {}
        self._cache: CleanCache[tuple[int, bytes]] = CleanCache(self.config.cache_size)
        self._explicit_seal = bool(options.get("explicit_seal", False))
        self._flush_lock = asyncio.Lock()
        self._flush_wanted = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._failing_since: float | None = None
        self._claimed = False
        app.on_partitions_revoked.connect(self._on_partitions_revoked)  # type: ignore[arg-type]

    # -- names in logs ---------------------------------------------------------

    @property
    def label(self) -> str:
        """How Faust's log lines name the store: the URL without its password."""
        return f"{type(self).__name__}: {mask_url(str(self.url))}"

    def __repr__(self) -> str:
        return f"<{self.label} table_name={self.table_name}>"

    # -- health ------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """Redis answers and the buffer is below its cap (for /readyz)."""
        return self._failing_since is None and self._writable.is_set()

    @property
    def ready(self) -> bool:
        """Healthy, and the current assignment has been claimed."""
        return self.healthy and self._claimed

    @property
    def dirty_keys(self) -> int:
        """Number of buffered (not yet flushed) writes."""
        return sum(len(owned.buffer) for owned in self._owned.values())

    # -- the app's hooks -----------------------------------------------------

    def seal(self) -> None:
        """Declare every write so far flushable (its outputs are sent)."""
        self._explicit_seal = True
        self._seal_all()

    async def prefetch(self, wanted: Mapping[int, Iterable[bytes]]) -> None:
        """Wait for buffer room, then load the keys of each partition in one round trip.

        Call once per batch with the batch's keys by partition: the reads
        of the batch then never block the loop on Redis. Every HMGET goes
        out in one pipeline (on a cluster, one per node). A flush that lands
        while the reads are in flight makes that partition's values stale,
        so they are read again (asynchronously, with the same retries) rather
        than left to a blocking read in the batch, which would stall the loop
        and fail the batch if Redis went away in between.
        """
        await self._writable.wait()
        distinct = {partition: list(dict.fromkeys(keys)) for partition, keys in wanted.items()}
        for _ in range(PREFETCH_ROUNDS):
            misses = self._misses(distinct)
            if not misses:
                return
            await self._prefetch_round(misses)

    def _misses(
        self, wanted: Mapping[int, list[bytes]]
    ) -> dict[int, tuple[OwnedPartition, int, list[bytes]]]:
        """The keys of owned partitions neither buffered nor cached, with the generation seen."""
        misses: dict[int, tuple[OwnedPartition, int, list[bytes]]] = {}
        for partition, keys in wanted.items():
            owned = self._owned.get(partition)
            if owned is None:
                continue
            buffer = owned.buffer
            missing = [
                key for key in keys if key not in buffer and (partition, key) not in self._cache
            ]
            if missing:
                misses[partition] = (owned, owned.generation, missing)
        return misses

    async def _prefetch_round(
        self, misses: dict[int, tuple[OwnedPartition, int, list[bytes]]]
    ) -> None:
        async def read() -> list[Any]:
            pipe = self._async.pipeline(transaction=False)
            for partition, (_, _, keys) in misses.items():
                pipe.hmget(self.layout.data_key(partition), keys)
            return list(await pipe.execute())

        replies = await self._retry("prefetch", read)
        for (partition, (owned, generation, keys)), values in zip(
            misses.items(), replies, strict=True
        ):
            # A flush that landed meanwhile may have made these values stale.
            if self._owned.get(partition) is not owned or owned.generation != generation:
                continue
            for key, value in zip(keys, values, strict=True):
                if key not in owned.buffer:
                    self._cache.put((partition, key), _as_bytes(value))

    def schedule(
        self,
        key: bytes,
        when: float | None,
        index: Index = "schedule",
        partition: int | None = None,
    ) -> None:
        """Set ``key``'s score in its partition's ``index`` (``None`` removes it).

        The entry joins ``partition`` (default: the current event's, inside
        stream iteration) and is flushed with that partition's values,
        atomically.
        """
        buffer = self._owned_buffer(self._write_partition() if partition is None else partition)
        if buffer is not None:
            buffer.index(index, key, when)
            self._after_write()

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Buffer ``key``'s new value (None: delete) in ``partition``.

        What a table write does to the store, for callers that know the
        partition; the caller sends the changelog record
        (``Collection.send_changelog``). A partition this worker does not
        own drops the write (its changelog record tells the owner).
        """
        buffer = self._owned_buffer(partition)
        if buffer is not None:
            if value is not None and self._outbox is not None:
                value = self._outbox.strip(value)
            buffer.write(key, value)
            self._after_write()

    def advance(self, partition: int, source: str, offset: int) -> None:
        """Note that ``partition``'s writes so far cover ``source`` below ``offset``.

        The mark is buffered with those writes, sealed with them and stored
        in the same script (see ``resume_offsets``). Ignored for a partition
        this worker does not own.
        """
        owned = self._owned.get(partition)
        if owned is not None:
            owned.buffer.advance(source, offset)
            owned.advance(source, offset)

    def resume_offsets(self, partition: int) -> dict[str, int]:
        """Per source, the offset up to which ``partition``'s state covers it.

        Stored with the data in Redis (read at the claim) and moved on by
        ``advance``: consuming a source from here never skips an event whose
        effect is missing. Empty for a partition not owned or never marked.
        """
        owned = self._owned.get(partition)
        return {} if owned is None else dict(owned.sources)

    def active_partitions(self) -> list[int]:
        """Partitions this worker owns (claimed, active) right now."""
        return sorted(self._owned)

    async def due(
        self,
        partition: int,
        until: float,
        limit: int,
        retry_at: float,
        index: Index = "schedule",
    ) -> list[bytes]:
        """Keys of ``partition`` whose ``index`` score is <= ``until`` (at most ``limit``).

        Each returned key's score moves to ``retry_at`` in the same script,
        so a later call does not return it again before then. Keys whose
        newest buffered score is not due (written since the last flush) are
        left out. Empty when the partition is not owned or was fenced.
        """
        owned = self._owned.get(partition)
        if owned is None:
            return []
        buffer, epoch = owned.buffer, owned.epoch
        # KEYS of the scripts: data, meta, contributions, sums, then the indexes.
        position = 5 + INDEXES.index(index)
        args = [str(epoch), repr(until), str(limit), repr(retry_at), str(position)]
        keys = await self._retry("due", self._evaluator(DUE, partition, args))
        if keys is None:
            logger.warning(
                "%s: partition %d fenced while reading its schedule", self.table_name, partition
            )
            return []
        out = []
        for key in keys:
            found, score = buffer.indexed(index, key)
            if not found or (score is not None and score <= until):
                out.append(key)
        return out

    async def flush(self, partitions: Iterable[int] | None = None) -> None:
        """Write sealed writes of ``partitions`` (default all) to Redis."""
        await self._flush(partitions, deadline=None)

    # -- Faust store API ---------------------------------------------------

    def persisted_offset(self, tp: TP) -> int | None:
        """Return the changelog offset stored with the partition's data."""
        owned = self._owned.get(tp.partition)
        if owned is not None:
            return owned.stored_offset
        return self._standby_offsets.get(tp)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        """Note an acknowledged changelog offset (stored by the next flush)."""
        owned = self._owned.get(tp.partition)
        if owned is not None:  # an ack of a partition gone since: its next owner replays it
            owned.ack(offset)

    def apply_changelog_batch(
        self,
        batch: Iterable[EventT[Any]],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
    ) -> None:
        """Buffer recovered changelog records of active partitions.

        With an outbox, each record's owed outputs are queued with the
        producer first: the flush that persists the record awaits them.
        """
        resent = 0
        for event in batch:
            message = event.message
            owned = self._owned.get(message.partition)
            if owned is None:
                continue  # standby partition: Redis already has it
            buffer = owned.buffer
            if message.key is None:
                raise TypeError(f"Changelog entry is missing key: {message}")
            value = message.value
            if value is not None and self._outbox is not None:
                resent += self._outbox.resend(value)
                value = self._outbox.strip(value)
            buffer.recover(message.key, value, message.offset)
            if self._schedule_recovered:
                buffer.recover_index("schedule", message.key, None if value is None else 0.0)
            self.set_persisted_offset(message.tp, message.offset)
        if resent:
            logger.info(
                "%s: resent %d owed outputs of recovered changelog records", self.table_name, resent
            )
        self._after_write()

    def _get(self, key: bytes) -> bytes | None:
        unknown = []
        for partition in self._partitions_for_read():
            found, value = self._lookup_local(partition, key)
            if found and value is not None:
                return value
            if not found:  # "known absent here" must not hide it in another partition
                unknown.append(partition)
        return self._read_through(unknown, key)

    def read(self, partition: int, key: bytes) -> bytes | None:
        """``key``'s value in ``partition``, as a table read there gives it.

        For readers that know the partition (the unit of work's batches, the
        /customers view): a table ``get`` depends on Faust's current-event
        context to pick it. Buffered and prefetched values first, else a
        blocking read of Redis (also of a partition not owned right now).
        """
        found, value = self._lookup_local(partition, key)
        if found:
            return value
        return self._read_through([partition], key)

    def _set(self, key: bytes, value: bytes | None) -> None:
        self.put(self._write_partition(), key, value)

    def _owned_buffer(self, partition: int) -> PartitionBuffer | None:
        owned = self._owned.get(partition)
        if owned is None:
            logger.warning(
                "%s: write to partition %d that this worker does not own: dropped "
                "(the changelog has it)",
                self.table_name,
                partition,
            )
            return None
        return owned.buffer

    def _del(self, key: bytes) -> None:
        self._set(key, None)

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None

    def _iteritems(self) -> Iterator[tuple[bytes, bytes]]:
        for partition in sorted(self._owned):
            overlay = self._owned[partition].buffer.overlay()
            data_key = self.layout.data_key(partition)
            for key, value in self._sync.hscan_iter(data_key, count=1000):
                if key not in overlay:
                    yield key, value
            for key, buffered in overlay.items():
                if buffered is not None:
                    yield key, buffered

    def _iterkeys(self) -> Iterator[bytes]:
        for key, _ in self._iteritems():
            yield key

    def _itervalues(self) -> Iterator[bytes]:
        for _, value in self._iteritems():
            yield value

    def _size(self) -> int:
        return sum(1 for _ in self._iteritems())

    def _clear(self) -> None:
        for partition, owned in list(self._owned.items()):
            if not self._run_sync(WIPE, partition, [str(owned.epoch)]):
                self._forget(partition, reason="fenced while clearing")
                continue
            owned.buffer = PartitionBuffer()
            self._drop_cache(partition)

    def reset_state(self) -> None:
        """Delete this app's keys of this table (all partitions), nothing else."""
        pattern = self.layout.scan_pattern()
        keys = list(self._sync.scan_iter(match=pattern, count=1000))
        pipe = self._sync.pipeline(transaction=False)
        for key in keys:
            pipe.unlink(key)
        pipe.execute()
        for partition in list(self._owned):
            self._forget(partition, reason="reset")
        logger.info("%s: reset_state removed %d Redis keys", self.table_name, len(keys))

    async def backup_partition(
        self, tp: TP | int, flush: bool = True, purge: bool = False, keep: int = 1
    ) -> None:
        """Not supported: Redis persistence (AOF/RDB) is the backup."""
        raise NotImplementedError("RedisStore relies on Redis persistence for backups")

    def restore_backup(self, tp: TP | int, latest: bool = True, backup_id: int = 0) -> None:
        """Not supported: Redis persistence (AOF/RDB) is the backup."""
        raise NotImplementedError("RedisStore relies on Redis persistence for backups")

    async def on_rebalance(
        self,
        assigned: set[TP],
        revoked: set[TP],
        newly_assigned: set[TP],
        generation_id: int = 0,
    ) -> None:
        """Forget revoked partitions, claim active ones, read standby offsets."""
        topics = self.table.changelog_topic.topics
        standbys = self.app.assignor.assigned_standbys()
        mine = {tp for tp in assigned if tp.topic in topics}
        active = {tp for tp in mine if tp not in standbys}
        for tp in revoked:
            if tp.topic in topics and tp not in active:
                self._forget(tp.partition, reason="revoked")
        self._standby_offsets = {tp: off for tp, off in self._standby_offsets.items() if tp in mine}
        self._claimed = False
        await self._claim(active)
        await self._read_standby_offsets(mine - active)
        self._claimed = True

    # -- lifecycle ----------------------------------------------------------

    @Service.task
    async def _flusher(self) -> None:
        """Flush on the interval, or early when the buffer grows large."""
        while not self.should_stop:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_wanted.wait(), self.config.flush_interval)
            self._flush_wanted.clear()
            try:
                await self._flush(None, deadline=None)
            except Exception:  # keep the task alive: the next interval retries
                logger.exception("%s: flush failed", self.table_name)

    async def on_stop(self) -> None:
        """Flush what is sealed, within the configured deadline, then close."""
        try:
            await self._flush(None, deadline=time.monotonic() + self.config.timeout)
        except Exception:
            logger.exception("%s: final flush failed; the changelog has the data", self.table_name)
        await self._async.aclose()
        self._sync.close()

    async def _on_partitions_revoked(self, sender: Any, revoked: set[TP], **_: Any) -> None:
        """Persist what is sealed before the partitions move.

        Writes still open belong to a batch whose outputs may not be sent
        yet: they stay in the changelog only, which the next owner replays.
        """
        partitions = {
            tp.partition for tp in revoked if tp.topic in self.table.changelog_topic.topics
        }
        try:
            await self._flush(partitions, deadline=time.monotonic() + self.config.timeout)
        except Exception:
            logger.exception(
                "%s: flush on revocation failed; the changelog has it", self.table_name
            )

    # -- internals: ownership ---------------------------------------------------

    async def _claim(self, tps: set[TP]) -> None:
        if not tps:
            return
        ordered = sorted(tps)
        replies = await asyncio.gather(
            *(self._retry("claim", self._evaluator(CLAIM, tp.partition, [])) for tp in ordered)
        )
        highwaters = await self._highwaters(ordered)
        for tp, (epoch_raw, offset_raw, *marks) in zip(ordered, replies, strict=True):
            partition, epoch, offset = tp.partition, int(epoch_raw), _to_offset(offset_raw)
            owned = self._owned.get(partition)
            if owned is None or owned.epoch != epoch - 1:
                # Not ours since the last claim (or never): local copies are stale.
                self._forget(partition, reason="claimed anew")
                owned = OwnedPartition(epoch, PartitionBuffer(flushed_offset=offset))
                self._owned[partition] = owned
            owned.epoch = epoch
            last = highwaters.get(tp)
            if offset is not None and last is not None and offset > last:
                logger.warning(
                    "%s: stored offset %d of %s is above the changelog's last offset %d "
                    "(topic recreated? faust #158): wiping the partition, rebuilding it",
                    self.table_name,
                    offset,
                    tp,
                    last,
                )
                await self._retry("wipe", self._evaluator(WIPE, partition, [str(epoch)]))
                self._drop_cache(partition)
                owned.buffer = PartitionBuffer()
                offset, marks = None, []
            owned.stored_offset = offset
            for field, at in zip(marks[::2], marks[1::2], strict=True):
                owned.advance(bytes(field).decode()[len(SOURCE_PREFIX) :], int(at))
            if offset is not None:
                owned.ack(offset)
            else:
                owned.acked = None

    async def _highwaters(self, tps: Sequence[TP]) -> Mapping[TP, int]:
        """Return each changelog partition's last offset (end - 1)."""
        try:
            ends = await asyncio.wait_for(self.app.consumer.highwaters(*tps), self.config.timeout)
        except Exception:
            logger.exception(
                "%s: no changelog highwaters; skipping the #158 check", self.table_name
            )
            return {}
        return {tp: end - 1 for tp, end in ends.items() if end is not None}

    async def _read_standby_offsets(self, tps: set[TP]) -> None:
        for tp in tps:
            raw = await self._retry("standby", self._offset_reader(tp.partition))
            self._standby_offsets[tp] = _to_offset(raw)

    def _forget(self, partition: int, *, reason: str) -> None:
        if self._owned.pop(partition, None) is not None:
            logger.info("%s: forgetting partition %d (%s)", self.table_name, partition, reason)
        self._drop_cache(partition)
        self._update_dirty()

    def _drop_cache(self, partition: int) -> None:
        """Drop cached values of ``partition`` (a prefetch in flight then drops its reads)."""
        self._cache.discard_where(lambda entry: entry[0] == partition)
        owned = self._owned.get(partition)
        if owned is not None:
            owned.generation += 1

    # -- internals: reads and writes -------------------------------------------

    def _write_partition(self) -> int:
        event = current_event()
        if event is None:
            raise RuntimeError(
                f"{self.table_name}: table write outside of stream iteration "
                "(no current event, so no partition)"
            )
        return int(event.message.partition)

    def _partitions_for_read(self) -> list[int]:
        event = current_event()
        if event is not None and not self.table.is_global:
            return [int(event.message.partition)]
        return sorted(self._owned)

    def _lookup_local(self, partition: int, key: bytes) -> tuple[bool, bytes | None]:
        owned = self._owned.get(partition)
        if owned is None:
            return False, None
        found, value = owned.buffer.lookup(key)
        if found:
            return found, value
        return self._cache.lookup((partition, key))

    def _read_through(self, partitions: list[int], key: bytes) -> bytes | None:
        """Blocking read of a key that prefetch did not load (counted)."""
        if not partitions:
            return None
        self.metrics.sync_reads.inc()
        pipe = self._sync.pipeline(transaction=False)
        for partition in partitions:
            pipe.hget(self.layout.data_key(partition), key)
        try:
            values = pipe.execute()
        except RETRYABLE:
            self.metrics.errors.labels("read").inc()
            raise
        found: bytes | None = None
        for partition, value in zip(partitions, values, strict=True):
            if partition in self._owned:
                self._cache.put((partition, key), value)
            if value is not None and found is None:
                found = value
        return found

    def _after_write(self) -> None:
        sealed = sum(len(owned.buffer.sealed) for owned in self._owned.values())
        dirty = self._update_dirty()
        if sealed >= self.config.flush_keys or dirty >= self.config.max_dirty:
            self._flush_wanted.set()

    def _update_dirty(self) -> int:
        dirty = self.dirty_keys
        self.metrics.dirty_keys.set(dirty)
        if dirty > self.config.max_dirty:
            self._writable.clear()
        else:
            self._writable.set()
        return dirty

    def _seal_all(self) -> None:
        for owned in self._owned.values():
            owned.buffer.seal(owned.acked)

    # -- internals: flush ----------------------------------------------------

    async def _flush(self, partitions: Iterable[int] | None, *, deadline: float | None) -> None:
        async with self._flush_lock:
            if not self._explicit_seal:
                self._seal_all()
            wanted = set(self._owned if partitions is None else partitions)
            owners = {
                p: owned
                for p, owned in self._owned.items()
                if p in wanted and owned.buffer.pending()
            }
            work = {p: owned.buffer for p, owned in owners.items()}
            if not work:
                return
            started = time.monotonic()
            snapshots = {p: buffer.take() for p, buffer in work.items()}
            try:
                await asyncio.wait_for(self._acknowledged(), self.config.timeout)
            except BaseException:
                for buffer in work.values():
                    buffer.abort()
                self.metrics.errors.labels("producer_flush").inc()
                raise
            for partition, buffer in work.items():
                if not buffer.open and not buffer.sealed:
                    # Nothing written since take(): every acknowledged changelog
                    # record belongs to the snapshot (or to earlier flushes).
                    acked = owners[partition].acked
                    snapshots[partition] = snapshots[partition].covering(acked)
            pending = list(work)
            try:
                while pending:
                    partition = pending[0]
                    await self._write_snapshot(
                        partition, work[partition], snapshots[partition], deadline
                    )
                    pending.pop(0)
            except BaseException:
                for partition in pending:
                    work[partition].abort()
                raise
            self.metrics.flush_seconds.observe(time.monotonic() - started)
            self._update_dirty()

    async def _acknowledged(self) -> None:
        """Wait until the records the snapshot's writes rely on are acknowledged.

        Explicitly sealed writes were acknowledged by their caller before
        ``seal``. Otherwise the table's own changelog records are only
        known to be with Faust's producer, which ``flush`` hands on. The
        outputs resent for recovered records are awaited in both cases.
        """
        if not self._explicit_seal:
            await self.app.producer.flush()
        if self._outbox is not None:
            await self._outbox.acknowledged()

    async def _write_snapshot(
        self, partition: int, buffer: PartitionBuffer, snapshot: Snapshot, deadline: float | None
    ) -> None:
        owned = self._owned.get(partition)
        try:
            if owned is None or owned.buffer is not buffer:
                raise PartitionFenced(f"partition {partition} no longer owned")
            epoch = owned.epoch
            kept, contributions = self._split(snapshot.items)
            for args in self._write_chunks(epoch, snapshot, kept, contributions):
                applied = await self._retry(
                    "flush", self._evaluator(WRITE, partition, args), deadline
                )
                if not applied:
                    raise PartitionFenced(f"epoch {epoch} of partition {partition} superseded")
                owned.generation += 1
        except PartitionFenced as exc:
            self.metrics.fenced_flushes.inc()
            logger.error(
                "%s: flush refused, dropping %d writes: %s",
                self.table_name,
                len(snapshot.items),
                exc,
            )
            self._forget(partition, reason="fenced")
            return
        buffer.settle(snapshot)
        self.metrics.keys_flushed.inc(len(snapshot.items))
        for key, value in kept.items():
            if key not in buffer:
                self._cache.put((partition, key), value)

    def _split(
        self, items: Mapping[bytes, bytes | None]
    ) -> tuple[dict[bytes, bytes | None], dict[bytes, bytes | None] | None]:
        """The values as the data hash keeps them, and each key's contribution
        (None for the whole map: this table keeps no sums)."""
        if self._contributions is None:
            return dict(items), None
        kept: dict[bytes, bytes | None] = {}
        contributions: dict[bytes, bytes | None] = {}
        for key, value in items.items():
            if value is None:
                kept[key] = contributions[key] = None
            else:
                kept[key], contributions[key] = self._contributions.split(value)
        return kept, contributions

    def _write_chunks(
        self,
        epoch: int,
        snapshot: Snapshot,
        items: Mapping[bytes, bytes | None],
        contributions: Mapping[bytes, bytes | None] | None,
    ) -> Iterator[list[Any]]:
        """Yield WRITE argument lists; only the last one stores the offsets.

        Chunks split by table key, and a key's value, contribution and index
        entries go in the same chunk, so even a crash between chunks leaves
        them in agreement.
        """
        index = snapshot.index
        keys = list(dict.fromkeys([*items, *(key for _, key in index)]))
        size = self.config.chunk_keys
        starts = range(0, max(len(keys), 1), size)
        for start in starts:
            chunk = keys[start : start + size]
            is_last = start == starts[-1]
            offset = "" if snapshot.offset is None or not is_last else str(snapshot.offset)
            values = [(key, items[key]) for key in chunk if key in items]
            pairs = [part for key, value in values if value is not None for part in (key, value)]
            deletes = [key for key, value in values if value is None]
            owed = [] if contributions is None else [(k, contributions[k]) for k, _ in values]
            tallies = [part for key, c in owed for part in (key, c or b"")]
            counts = [str(len(pairs) // 2), str(len(deletes)), str(len(owed))]
            entries: list[Any] = []
            for name in INDEXES:
                scores = [(key, index[name, key]) for key in chunk if (name, key) in index]
                adds = [part for key, s in scores if s is not None for part in (repr(s), key)]
                removes = [key for key, s in scores if s is None]
                counts += [str(len(adds) // 2), str(len(removes))]
                entries += [*adds, *removes]
            marks = snapshot.sources.items() if is_last else ()
            counts.append(str(len(marks)))
            progress = [part for source, at in marks for part in (SOURCE_PREFIX + source, str(at))]
            yield [str(epoch), offset, *counts, *pairs, *deletes, *tallies, *entries, *progress]

    # -- internals: Redis calls --------------------------------------------------

    def _evaluator(
        self, script: Script, partition: int, args: list[Any]
    ) -> Callable[[], Awaitable[Any]]:
        keys = self.layout.keys(partition)

        async def call() -> Any:
            try:
                return await self._async.evalsha(script.sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                return await self._async.eval(script.source, len(keys), *keys, *args)

        return call

    def _offset_reader(self, partition: int) -> Callable[[], Awaitable[Any]]:
        meta_key = self.layout.meta_key(partition)

        async def call() -> Any:
            return await self._async.hget(meta_key, OFFSET_FIELD)

        return call

    def _run_sync(self, script: Script, partition: int, args: list[Any]) -> Any:
        keys = self.layout.keys(partition)
        try:
            return self._sync.eval(script.source, len(keys), *keys, *args)
        except RETRYABLE:
            self.metrics.errors.labels("clear").inc()
            raise

    async def _retry(
        self, operation: str, call: Callable[[], Awaitable[T]], deadline: float | None = None
    ) -> T:
        """Run ``call`` until it succeeds; back off exponentially on Redis errors."""
        delay = 0.05
        while True:
            try:
                result = await call()
            except RETRYABLE as exc:
                self.metrics.errors.labels(operation).inc()
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                logger.warning(
                    "%s: Redis %s failed (%r); retry in %.2fs",
                    self.table_name,
                    operation,
                    exc,
                    delay,
                )
                if self.should_stop and deadline is None:
                    raise  # stopping: on_stop retries within its own deadline
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF)
                continue
            self._failing_since = None
            return result
