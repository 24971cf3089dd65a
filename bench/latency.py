"""Latency: purchase produced -> its ltv.updates record read, at a fixed input rate.

One worker runs on fresh topics; this process publishes the bench feed at
``--rate`` events/s (default: half the ``worker_events_per_s`` in
``--throughput-json``, i.e. half the measured maximum) for ``--seconds``,
and reads ``ltv.updates`` at the same time. Each update names its cause's
event id; its latency is the time from handing that purchase to the
producer to reading the update (one clock, one process). The first
``--warmup`` seconds are left out.

    ltv bench latency [--rate R | --throughput-json var/bench/throughput.json] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import orjson
from _harness import (
    Infra,
    Worker,
    add_common_args,
    cleanup,
    feed,
    infra,
    report,
    run_id,
    running,
    settings_env,
    settings_for,
    wait_until,
)
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.admin import ensure_topics
from streams.kafka_security import kafka_client
from streams.publisher import topic_of
from streams.settings import Settings

#: Producer pacing step: the feed is sent in slices of rate * STEP events.
STEP = 0.01


async def _produce(settings: Settings, rate: float, seconds: float, sent: dict[str, float]) -> None:
    producer = AIOKafkaProducer(**kafka_client(settings), linger_ms=1)
    await producer.start()
    topic = topic_of(settings)
    events = iter(feed(100_000))
    started = time.monotonic()
    n = 0
    try:
        while (now := time.monotonic()) < started + seconds:
            due = int((now - started) * rate)
            while n < due:
                event = next(events)
                if event.kind == "purchase":
                    sent.setdefault(event.value["event_id"], time.monotonic())
                value = orjson.dumps(event.value)
                await producer.send(topic[event.kind], value, key=event.key.encode())
                n += 1
            await asyncio.sleep(STEP)  # pacing a fixed-rate feed
        await producer.flush()
    finally:
        await producer.stop()


async def _consume(
    topic: str, servers: Infra, sent: dict[str, float], until: float
) -> list[tuple[float, float]]:
    """(sent at, latency) of every update whose cause is a purchase this process sent."""
    consumer = AIOKafkaConsumer(topic, **servers.kafka(), auto_offset_reset="earliest")
    await consumer.start()
    seen: list[tuple[float, float]] = []
    try:
        while time.monotonic() < until:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    cause = orjson.loads(record.value or b"{}").get("cause") or {}
                    at = sent.get(cause.get("event_id", ""))
                    if cause.get("type") == "purchase" and at is not None:
                        seen.append((at, now - at))
    finally:
        await consumer.stop()
    return seen


async def _run(
    settings: Settings, servers: Infra, rate: float, seconds: float
) -> list[tuple[float, float]]:
    sent: dict[str, float] = {}
    until = time.monotonic() + seconds + 5.0  # the tail's updates
    reader = asyncio.create_task(_consume(settings.topic_updates, servers, sent, until))
    await _produce(settings, rate, seconds, sent)
    return await reader


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def measure(
    rate: float, seconds: float, warmup: float, servers: Infra, timeout: float
) -> dict[str, float]:
    app_id = run_id()
    env = settings_env(app_id, app_id, servers)
    settings = settings_for(env)
    try:
        asyncio.run(ensure_topics(settings))
        worker = Worker(f"{app_id}-latency", env)
        worker.start()
        with running(worker):
            wait_until(worker.ready, timeout, "the worker's /readyz")
            seen = asyncio.run(_run(settings, servers, rate, seconds))
        if not seen:
            raise SystemExit("bench: no update of a sent purchase was read")
        start = min(at for at, _ in seen) + warmup
        latencies = [lat for at, lat in seen if at >= start]
        return {
            "rate": round(rate),
            "updates_measured": len(latencies),
            "p50_s": round(_percentile(latencies, 50), 4),
            "p95_s": round(_percentile(latencies, 95), 4),
            "p99_s": round(_percentile(latencies, 99), 4),
            "max_s": round(max(latencies), 4),
        }
    finally:
        cleanup((app_id,), servers)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=None, help="input events/s")
    parser.add_argument("--throughput-json", type=Path, default=Path("var/bench/throughput.json"))
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    add_common_args(parser)
    args = parser.parse_args(argv)
    rate = args.rate
    if rate is None:
        if not args.throughput_json.is_file():
            parser.error(f"no --rate and no {args.throughput_json} (run ltv bench throughput)")
        rate = json.loads(args.throughput_json.read_text())["worker_events_per_s"] / 2
    figures = measure(rate, args.seconds, args.warmup, infra(args), args.timeout)
    report("latency", figures, args.json)


if __name__ == "__main__":
    main()
