"""Commit only input records the agents handled (Faust 0.15 does not).

Around a rebalance Faust loses track of records in two ways, and its commit
logic then moves past records nobody processed -- a worker stopped or killed
right after the rebalance leaves them behind for good:

* a stream drops records fetched before the rebalance (an older consumer
  generation, or while flow control is suspended) and acknowledges them;
* a fetch cut short (or a delivery cancelled) drops records while the
  client's position moves on; Faust reads the jump in offsets as a gap of
  the topic (compaction, transaction markers) and counts it as acknowledged.

The agents mark the records of every batch they handled (``mark``) before
Faust acks the batch; ``GuardedConsumer`` counts acks only for marked records
of the guarded topics (the agents' inputs), fetches holes in what reached the
streams again, and keeps commits behind any record still missing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, cast

from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, AppT, Message
from mode.utils.futures import notify

__all__ = ["HandledRecords", "Transport", "handled_records"]

log = logging.getLogger(__name__)


class HandledRecords:
    """Records the agents handled whose acknowledgement is still to come."""

    def __init__(self) -> None:
        self.topics: set[str] = set()
        self._pending: set[tuple[TP, int]] = set()
        #: Acknowledgements not counted so far (records never handed to an agent).
        self.refused = 0
        #: Called with (partition, offset) when consumption of a guarded
        #: partition starts at ``offset`` (an assignment): what comes before it
        #: was handled already.
        self.on_start: list[Callable[[TP, int], None]] = []

    def guard(self, topics: Iterable[str]) -> None:
        """Count acknowledgements of ``topics`` only for marked records."""
        self.topics.update(topics)

    def mark(self, messages: Iterable[Message]) -> None:
        """The agent has handled these records: their acknowledgement counts.

        A mark stays until an ack of that offset consumes it (any copy of the
        record: once handled, its offset may be committed).
        """
        self._pending.update((m.tp, m.offset) for m in messages if m.topic in self.topics)

    def admits(self, message: Message) -> bool:
        """True when ``message``'s acknowledgement may advance the committed offset."""
        if message.topic not in self.topics:
            return True
        key = (message.tp, message.offset)
        if key in self._pending:
            self._pending.discard(key)
            return True
        return False


class GuardedConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer that commits only what the agents handled.

    Ways Faust lets a commit pass records no agent handled, closed here for
    the guarded topics:

    * a record skipped by the stream and acked anyway (see the module doc):
      the ack is refused;
    * records fetched but never handed to the streams (a fetch cut short
      around a rebalance, a delivery cancelled when the flow stops): Faust
      takes the hole for a gap of the topic (compaction, transaction markers)
      and counts it as acked, or -- for a hole of one offset at the head of
      the acked run, or before the first record after a seek -- does not
      notice it at all. Here every delivered record is checked against the
      next offset expected on its partition; a hole is fetched again, once,
      and only a hole still there after re-fetching is a real gap;
    * a record handed to the streams but dropped before an agent saw it (a
      queue cleared by a rebalance) leaves a hole at the head of the acked
      run; Faust commits past a one-offset hole there. Here a commit whose
      run does not start at the committed offset waits, and the head is
      fetched again.

    Offsets refused or in a hole are *missing* until handled or re-fetched:
    meanwhile no commit of the partition starts beyond them.
    """

    def __init__(self, *args: Any, callback: Any, **kwargs: Any) -> None:
        self._missing: dict[TP, set[int]] = {}
        self._expected: dict[TP, int] = {}
        self._rewinds: dict[TP, int] = {}
        self._rewound: dict[TP, int] = {}
        #: First offset of a partition with no committed offset (its earliest).
        self._base: dict[TP, int] = {}
        super().__init__(*args, callback=self._deliver(callback), **kwargs)

    @property
    def handled(self) -> HandledRecords:
        return cast("Transport", self.transport).handled

    def _deliver(self, callback: Any) -> Any:
        """Wrap Faust's delivery callback: note what really reached the streams."""

        async def deliver(message: Message) -> None:
            tp, offset = message.tp, message.offset
            expected = self._expected.get(tp)
            if tp.topic in self.handled.topics and expected is not None and offset > expected:
                await self._hole(tp, expected, offset)
            await callback(message)
            if expected is None or offset >= expected:
                self._expected[tp] = offset + 1

        return deliver

    async def _hole(self, tp: TP, start: int, end: int) -> None:
        """Records ``start`` .. ``end - 1`` of ``tp`` never reached the streams."""
        if self._rewound.pop(tp, None) == start:  # still there after re-fetching: a real gap
            log.info("%s[%d]: no records at %d..%d (a gap)", tp.topic, tp.partition, start, end - 1)
            await super()._add_gap(tp, start, end - 1)  # Faust's gap bookkeeping
            return
        log.warning(
            "%s[%d]: offsets %d..%d not delivered to the agent; fetching them again",
            tp.topic,
            tp.partition,
            start,
            end - 1,
        )
        self._refetch(tp, start, end)

    def _refetch(self, tp: TP, start: int, end: int) -> None:
        self._missing.setdefault(tp, set()).update(range(start, end))
        self._rewinds[tp] = min(self._rewinds.get(tp, start), start)

    def ack(self, message: Message) -> bool:
        handled = self.handled
        if handled.admits(message):
            missing = self._missing.get(message.tp)
            if missing:
                missing.discard(message.offset)
            return bool(super().ack(message))
        # Release it like an ack would, without recording its offset, and
        # fetch it again (a rebalance may have sought past it already).
        message.acked = True
        self._unacked_messages.discard(message)
        notify(self._waiting_for_ack)
        self._refetch(message.tp, message.offset, message.offset + 1)
        handled.refused += 1
        if handled.refused & (handled.refused - 1) == 0:  # 1, 2, 4, 8, ...: not a flood
            log.info(
                "not committing %s[%d]@%d: acknowledged by Faust without reaching an "
                "agent (a rebalance); fetching it again. %d such records so far",
                message.topic,
                message.partition,
                message.offset,
                handled.refused,
            )
        return False

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        if tp.topic not in self.handled.topics:  # guarded topics: see _deliver
            await super()._add_gap(tp, offset_from, offset_to)

    async def perform_seek(self) -> None:
        await super().perform_seek()
        guarded = [tp for tp in self.assignment() if tp.topic in self.handled.topics]
        unknown = [tp for tp in guarded if self._committed_offset.get(tp) is None]
        earliest = await self.earliest_offsets(*unknown) if unknown else {}
        for tp in guarded:
            self._forget(tp)  # everything from the committed offset comes again
            committed = self._committed_offset.get(tp)
            start = committed if committed is not None else earliest.get(tp)
            if start is not None:
                self._expected[tp] = start
                if committed is None:
                    self._base[tp] = start
                for listener in self.handled.on_start:
                    listener(tp, start)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        for tp, offset in list(self._rewinds.items()):
            del self._rewinds[tp]
            if tp not in self.assignment():
                continue
            # Whatever the re-fetch delivers is handled and acked as usual;
            # what it does not deliver is not there.
            self._missing[tp] = {o for o in self._missing.get(tp, ()) if o < offset}
            self._rewound[tp] = offset
            self._expected[tp] = offset
            # In the consumer's thread: aiokafka's seek is not thread-safe.
            await self.seek_wait({tp: offset})
        async for item in super().getmany(timeout):
            yield item

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked.get(tp)
        if acked and tp.topic in self.handled.topics:
            missing = self._missing.get(tp)
            if missing and min(acked) > min(missing):
                return None  # the run would start beyond a record nobody handled yet
            head = self._committed_offset[tp]
            if head is None:
                head = self._base.get(tp)
            if head is not None and min(acked) > head and not self._gap[tp].overlaps(head):
                # Faust would commit past a head record that never reached an
                # agent (it tolerates such a hole of one offset): fetch it again.
                self._refetch(tp, head, min(acked))
                return None
        offset: int | None = super()._new_offset(tp)
        return offset

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:  # the next owner starts at the committed offset
            self._forget(tp)
        await super().on_partitions_revoked(revoked)

    def _forget(self, tp: TP) -> None:
        """Drop what this consumer tracks of ``tp``'s delivery (a clean slate)."""
        for state in (self._missing, self._expected, self._rewinds, self._rewound, self._base):
            state.pop(tp, None)


class Transport(aiokafka_driver.Transport):
    """The aiokafka transport with the guarded consumer."""

    Consumer = GuardedConsumer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handled = HandledRecords()


def handled_records(app: AppT) -> HandledRecords:
    """The app's registry of handled records (``Transport`` must be installed)."""
    transport = app.transport
    if not isinstance(transport, Transport):
        raise TypeError(f"{app.conf.id}: the transport is {type(transport)}, not streams.acks")
    return transport.handled
