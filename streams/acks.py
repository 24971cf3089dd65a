"""Count an acknowledgement towards the committed offset only for handled records.

Faust acknowledges records its streams never hand to the agent. Around a
rebalance a stream drops the records fetched before it -- from an older
consumer generation, or while flow control is suspended -- and acks them,
relying on the seek to the committed offset to deliver them again. Those
offsets then sit at the head of the partition's acked list, so the next
commit moves past them: a worker stopped right after such a rebalance
commits records nobody processed, and the next owner starts behind them.

The agents mark the records of every batch they handled (``mark``) before
Faust acks the batch. For the guarded topics (the agents' inputs) the
consumer counts an acknowledgement only for a marked record; an unmarked one
is merely released from Faust's wait-for-ack set, and its redelivery after
the seek is handled and counted as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
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
    """Faust's aiokafka consumer that ignores acks of records no agent handled.

    Faust tolerates a hole of one offset at the head of a partition's acked
    run (for transaction markers), so a refused record is also kept as
    *outstanding* until a handled copy is acked: no commit of that partition
    starts beyond it meanwhile.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._outstanding: dict[TP, set[int]] = {}
        super().__init__(*args, **kwargs)

    def ack(self, message: Message) -> bool:
        handled = cast("Transport", self.transport).handled
        if handled.admits(message):
            waiting = self._outstanding.get(message.tp)
            if waiting:
                waiting.discard(message.offset)
            return bool(super().ack(message))
        # Release it like an ack would, without recording its offset: the
        # stream skipped it, and the seek to the committed offset redelivers it.
        message.acked = True
        self._unacked_messages.discard(message)
        self._outstanding.setdefault(message.tp, set()).add(message.offset)
        notify(self._waiting_for_ack)
        handled.refused += 1
        if handled.refused & (handled.refused - 1) == 0:  # 1, 2, 4, 8, ...: not a flood
            log.info(
                "not committing %s[%d]@%d: acknowledged by Faust without reaching an "
                "agent (a rebalance); it is redelivered. %d such records so far",
                message.topic,
                message.partition,
                message.offset,
                handled.refused,
            )
        return False

    def _new_offset(self, tp: TP) -> int | None:
        waiting = self._outstanding.get(tp)
        acked = self._acked.get(tp)
        if waiting and acked and min(acked) > min(waiting):
            return None  # the run would start beyond a record nobody handled yet
        offset: int | None = super()._new_offset(tp)
        return offset

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:  # Faust drops its acked bookkeeping of these too
            self._outstanding.pop(tp, None)
        await super().on_partitions_revoked(revoked)


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
