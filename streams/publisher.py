"""Publishing input events to Kafka for ``ltv demo`` and ``ltv backfill``.

A plain aiokafka producer, not the Faust app: feeding orders is a client's
job and must not join the worker's consumer group or create its tables.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import orjson
from aiokafka import AIOKafkaProducer

from streams.admin import ensure_topics
from streams.demo import DemoEvent, EventKind
from streams.kafka_security import kafka_client
from streams.settings import Settings


def topic_of(settings: Settings) -> dict[EventKind, str]:
    """The topic each kind of input event is published to."""
    return {
        "purchase": settings.topic_purchases,
        "cancellation": settings.topic_cancellations,
        "feedback": settings.topic_feedback,
    }


async def publish(
    events: Iterable[DemoEvent],
    settings: Settings,
    *,
    rate: float | None = None,
    limit: int | None = None,
    on_sent: Callable[[int], None] | None = None,
    live: Callable[[DemoEvent], bool] | None = None,
) -> int:
    """Send ``events`` keyed by customer id; return how many were sent.

    ``rate`` paces sending to that many events per second (None: as fast as
    the producer batches). With ``live``, the events before the first one it
    accepts go out unpaced (a shop's history, backfilled) and pacing starts
    there. Every send is acknowledged before returning, so a caller that
    exits afterwards has lost nothing.
    """
    await ensure_topics(settings)
    topics = topic_of(settings)
    producer = AIOKafkaProducer(
        **kafka_client(settings),
        linger_ms=5,
        acks="all",
        enable_idempotence=True,
    )
    await producer.start()
    sent = 0
    pending: list[asyncio.Future[object]] = []
    # When pacing started, and how many had been sent then (None: not yet).
    paced: tuple[float, int] | None = None
    try:
        for event in events:
            if limit is not None and sent >= limit:
                break
            if rate and paced is None and (live is None or live(event)):
                paced = (time.monotonic(), sent)
            if rate and paced is not None:
                started, before = paced
                ahead = started + (sent - before) / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)  # pacing a live feed, not awaiting a condition
            pending.append(
                await producer.send(
                    topics[event.kind], orjson.dumps(event.value), key=event.key.encode()
                )
            )
            sent += 1
            if len(pending) >= 1000 or paced is not None:
                await asyncio.gather(*pending)
                pending.clear()
                if on_sent is not None:
                    on_sent(sent)
        await asyncio.gather(*pending)
        if on_sent is not None:
            on_sent(sent)
    finally:
        await producer.stop()
    return sent
