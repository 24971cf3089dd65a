"""Throughput: one worker, a raw aiokafka loop and two workers drain the same preloaded events.

N events of the bench feed (default 200 000 over 100 000 customers: ~85 %
purchases, ~10 % cancellations, ~5 % re-sent duplicates) are published once
to fresh input topics. Then, each as its own consumer group over the same
topics on the same broker:

* ``worker``: one ``ltv worker`` (Redis-backed state, every output
  published), timed from its first processed event to its last (/metrics);
* ``baseline``: a raw aiokafka loop in this process that consumes, decodes
  the JSON, aggregates a per-customer dict and produces one output per
  event -- the floor cost of moving these records through Python;
* ``two_workers``: two ``ltv worker`` processes of one group.

    ltv bench throughput [--events 200000] [--customers 100000] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from pathlib import Path

import orjson
from _harness import (
    Infra,
    Profiler,
    Worker,
    add_common_args,
    cleanup,
    drain_rate,
    infra,
    preload,
    print_profile,
    report,
    run_id,
    running,
    settings_env,
    settings_for,
)
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def baseline(topics: list[str], output: str, total: int, servers: Infra) -> float:
    """Events/s of a plain consume -> aggregate -> produce loop over ``total`` records."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=servers.bootstrap,
        group_id=f"{output}-group",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
    )
    producer = AIOKafkaProducer(bootstrap_servers=servers.bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    totals: dict[bytes, float] = defaultdict(float)
    seen = 0
    first: float | None = None
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            if first is None and batches:
                first = time.monotonic()
            for records in batches.values():
                for record in records:
                    body = orjson.loads(record.value or b"{}")
                    key = record.key or b""
                    totals[key] += float(body.get("amount") or 0)
                    out = orjson.dumps(
                        {"customer_id": body.get("customer_id"), "total": totals[key]}
                    )
                    await producer.send(output, out, key=key)
                    seen += 1
        await producer.flush()
        assert first is not None
        return total / (time.monotonic() - first)
    finally:
        await producer.stop()
        await consumer.stop()


def run(
    events: int,
    customers: int,
    servers: Infra,
    timeout: float,
    two: bool,
    profile: Path | None = None,
) -> dict[str, float]:
    topics = run_id()
    one, pair = f"{topics}w1", f"{topics}w2"
    settings = settings_for(settings_env(topics, one, servers))
    try:
        loaded = preload(settings, events, customers)
        worker = Worker(f"{one}-a", settings_env(topics, one, servers))
        worker.start()
        with running(worker):
            profiler = None if profile is None else Profiler(worker.pid, profile)
            drain = drain_rate([worker], loaded, timeout)
            if profiler is not None:
                profiler.stop()
                print_profile(profiler.summary())
        inputs = [settings.topic_purchases, settings.topic_cancellations]
        base_rate = asyncio.run(baseline(inputs, f"{topics}.baseline", loaded, servers))
        figures: dict[str, float] = {
            "events": loaded,
            "worker_seconds": round(drain.seconds, 2),
            "worker_events_per_s": round(drain.events_per_s),
            "worker_cpu_share": round(drain.cpu_share, 2),
            "baseline_events_per_s": round(base_rate),
            "ratio": round(drain.events_per_s / base_rate, 3),
        }
        if two:
            workers = [Worker(f"{pair}-{n}", settings_env(topics, pair, servers)) for n in "ab"]
            for w in workers:
                w.start()
            with running(*workers):
                both = drain_rate(workers, loaded, timeout)
            figures["two_workers_events_per_s"] = round(both.events_per_s)
            figures["two_workers_cpu_share"] = round(both.cpu_share, 2)
        return figures
    finally:
        cleanup((topics,), servers)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--no-two-workers", dest="two", action="store_false")
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy the worker's drain into this file"
    )
    add_common_args(parser)
    args = parser.parse_args(argv)
    servers = infra(args)
    figures = run(args.events, args.customers, servers, args.timeout, args.two, args.profile)
    report("throughput", figures, args.json)


if __name__ == "__main__":
    main()
