"""The ``customers`` table's outbox: its values carry the outputs they owe.

Glue between ``state.envelope`` (the value layout) and the store's
``Outbox`` protocol (``state.store.outbox``): Redis keeps the value without
its outbox, and recovery resends the owed records to their output topics.
"""

from __future__ import annotations

from collections.abc import Mapping

import faust

from state import envelope
from state.envelope import OutputKind


class CustomerOutbox:
    """``Outbox`` of ``customers`` values, sending through the app's raw topics."""

    def __init__(self, topics: Mapping[OutputKind, faust.TopicT]) -> None:
        self.topics = topics

    def strip(self, value: bytes) -> bytes:
        return envelope.without_outbox(value)

    def resend(self, value: bytes) -> int:
        owed = envelope.decode(value).outbox
        for output in owed:
            self.topics[output.kind].send_soon(key=output.key, value=output.value)
        return len(owed)
