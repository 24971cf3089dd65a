"""How far an input partition has moved in event time, counting only what was read.

A held cancellation is reported once the purchases partition that carries
its customer's purchases has moved past it (``state.customer.notify_unmatched``).
"Moved past" must mean that every purchase before that point was processed:
records of a partition can reach the worker out of offset order or with a
hole (a consumer that re-reads from an earlier offset after a rebalance,
transaction markers), and a progress taken from later records would report
a cancellation whose purchase is only late in delivery.

So a ``PartitionProgress`` advances over an unbroken run of offsets, starting
where consumption of the partition started (``start``: the committed offset
at an assignment). Records beyond a hole wait in ``ahead`` until the hole is
filled; a redelivery of what is counted already changes nothing. A hole that
stays while ``MAX_AHEAD`` records wait behind it is taken for a real gap of
the topic (transaction markers, records deleted by retention), logged, and
stepped over. Every record of the partition is read, whatever its outcome:
an invalid one has no time but still fills its offset.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["MAX_AHEAD", "PartitionProgress"]

log = logging.getLogger(__name__)

#: Records kept behind a hole before it is taken for a real gap of the topic.
MAX_AHEAD = 10_000


@dataclass
class PartitionProgress:
    """Newest event time of an unbroken run of one partition's offsets."""

    #: The offset the run needs next (None: the first record read starts it).
    next_offset: int | None = None
    #: Newest ``occurred_at`` in the run (None: nothing with a time yet).
    at: datetime | None = None
    ahead: dict[int, datetime | None] = field(default_factory=dict)

    def start(self, offset: int) -> None:
        """Consumption (re)starts at ``offset``: a clean slate from there."""
        self.next_offset, self.at = offset, None
        self.ahead.clear()

    def read(self, offset: int, occurred_at: datetime | None) -> None:
        """The record at ``offset`` was processed (``occurred_at`` None: no time)."""
        if self.next_offset is None:
            self.next_offset = offset
        if offset < self.next_offset:
            return  # redelivered: counted already
        if offset > self.next_offset:
            self.ahead[offset] = occurred_at
            if len(self.ahead) > MAX_AHEAD:
                gap = min(self.ahead)
                log.warning(
                    "offsets %d..%d never came while %d records waited behind them: "
                    "taken for a gap of the topic",
                    self.next_offset,
                    gap - 1,
                    len(self.ahead),
                )
                self._take(gap, self.ahead.pop(gap))
                self._drain()
            return
        self._take(offset, occurred_at)
        self._drain()

    def _take(self, offset: int, occurred_at: datetime | None) -> None:
        self.next_offset = offset + 1
        if occurred_at is not None and (self.at is None or occurred_at > self.at):
            self.at = occurred_at

    def _drain(self) -> None:
        while self.next_offset in self.ahead:
            self._take(self.next_offset, self.ahead.pop(self.next_offset))
