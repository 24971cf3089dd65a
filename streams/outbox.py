"""The ``customers`` table's outbox: its values carry the outputs they owe.

Glue between ``state.envelope`` (the value layout) and the store's
``Outbox`` protocol (``state.store.outbox``): Redis keeps the value without
its outbox, and recovery resends the owed records to their output topics.
Values also carry their contribution to the group aggregates, which the
store keeps beside the data (``Contributions`` of ``state.store.sums``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Mapping, Sequence

from aiokafka.structs import RecordMetadata
from faust.types import AppT

from state import envelope
from state.envelope import Output, OutputKind


class CustomerOutbox:
    """``Outbox`` of ``customers`` values, sending through the app's producer.

    Resent records queue here in the order recovery met them and leave in
    that order, so a customer's resent updates keep their version order.
    """

    def __init__(self, app: AppT, topics: Mapping[OutputKind, Sequence[str]]) -> None:
        self.app = app
        self.topics = topics
        self.queued: deque[Output] = deque()

    def strip(self, value: bytes) -> bytes:
        return envelope.without_outbox(value)

    def resend(self, value: bytes) -> int:
        owed = envelope.decode(value).outbox
        self.queued.extend(owed)
        return len(owed)

    async def acknowledged(self) -> None:
        sent: list[Awaitable[RecordMetadata]] = []
        producer = self.app.producer
        while self.queued:
            output = self.queued.popleft()
            for topic in self.topics[output.kind]:
                sent.append(await producer.send(topic, output.key, output.value, None, None, None))
        await asyncio.gather(*sent)


class CustomerContributions:
    """``Contributions`` of ``customers`` values: the envelope's contribution section."""

    def split(self, value: bytes) -> tuple[bytes, bytes | None]:
        return envelope.split_contribution(value)
