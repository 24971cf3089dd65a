"""Waiting until everything handed to Faust's producer is acknowledged.

Table writes reach the producer through Faust's ``ProducerBuffer`` (a queue
drained by a background task), and ``Producer.flush()`` does not wait for
all of it (faust-streaming 0.11-0.15): the buffer counts as empty as soon as
its task has *taken* the last message, before handing it to the client, and
it gives up after 0.1 s without progress. A flush that returns early breaks
what the store promises (Redis covers only acknowledged records) and lets a
later direct send overtake a buffered one.

``drain`` puts a barrier into the same FIFO queue and waits until the
buffer's task reaches it -- everything queued before it is then with the
client -- and only then flushes the client.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from faust.types import AppT

__all__ = ["drain"]


class _Barrier:
    """Queued like a message; resolves when the buffer's task "publishes" it."""

    def __init__(self, reached: asyncio.Future[None]) -> None:
        self.reached = reached
        # ProducerBuffer calls fut.message.channel.publish_message(fut, wait=False).
        self.message = self
        self.channel = self

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        if not self.reached.done():
            self.reached.set_result(None)


async def drain(app: AppT) -> None:
    """Return once every record handed to ``app.producer`` so far is acknowledged."""
    producer = app.producer
    if not app.conf.producer_threaded:
        reached: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        producer.buffer.put(cast(Any, _Barrier(reached)))
        await reached
    await producer.flush()
