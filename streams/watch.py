"""``ltv watch``: follow an output topic in the terminal, one line per record."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.admin import ensure_topics, partitions_of
from streams.kafka_security import kafka_client
from streams.settings import Settings

#: What an ltv.updates line shows, in this order (fields that are null are left out).
_FIELDS = (
    "version",
    "orders",
    "net_revenue",
    "total_ltv",
    "predicted_ltv",
    "p_alive",
    "churn_risk",
    "segment",
)


def summarise(value: bytes) -> str:
    """A short human line for an ltv.updates or ltv.churn-risk record."""
    try:
        body: dict[str, Any] = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value[:120].decode("utf-8", "replace")
    if "error" in body and "source_topic" in body:
        error = body["error"]
        return f"dead letter from {body['source_topic']} ({error['code']}): {error['message']}"
    if "current" in body and "previous" in body:
        return f"{body.get('customer_id')}: risk {body['previous']} -> {body['current']}"
    shown = " ".join(f"{k}={_shown(body[k])}" for k in _FIELDS if body.get(k) is not None)
    return f"{body.get('customer_id')}: {shown}"


async def _start_at(
    settings: Settings, consumer: AIOKafkaConsumer, topic: str, from_beginning: bool
) -> None:
    """Assign every partition of ``topic`` at its beginning or its end.

    Asked for explicitly, the offsets of a topic created a moment ago are
    retried quietly until its partitions are ready; an offset reset on
    subscription logs every retry as an error instead.
    """
    numbers = await partitions_of(settings, topic)
    if not numbers:
        raise SystemExit(f"ltv watch: topic {topic!r} does not exist")
    partitions = [TopicPartition(topic, p) for p in numbers]
    if from_beginning:
        offsets = await consumer.beginning_offsets(partitions)
    else:
        offsets = await consumer.end_offsets(partitions)
    # Positions set in the same step as the assignment: the fetcher never
    # sees a partition without one, which it would reset on its own.
    consumer.assign(partitions)
    for tp, offset in offsets.items():
        consumer.seek(tp, offset)


def _shown(value: Any) -> str:
    """Probabilities to two places: a terminal line, not a record."""
    return f"{value:.2f}" if isinstance(value, float) else str(value)


async def watch(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool = False,
    count: int | None = None,
    timeout: float | None = None,
) -> int:
    """Print records of ``topic`` until ``count`` were seen or ``timeout`` seconds passed."""
    await ensure_topics(settings)  # a watch started before the worker finds its topics ready
    consumer = AIOKafkaConsumer(**kafka_client(settings), enable_auto_commit=False, group_id=None)
    await consumer.start()
    seen = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        await _start_at(settings, consumer, topic, from_beginning)
        while count is None or seen < count:
            wait_ms = 1000
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                wait_ms = int(min(1.0, left) * 1000)
            batches = await consumer.getmany(timeout_ms=wait_ms)
            for records in batches.values():
                for record in records:
                    if record.value is not None:
                        print(summarise(record.value), flush=True)
                        seen += 1
    finally:
        await consumer.stop()
    return seen


def run_watch(settings: Settings, topic: str, **kwargs: Any) -> int:
    return asyncio.run(watch(settings, topic, **kwargs))
