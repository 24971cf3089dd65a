"""Benchmark of one inactivity timer tick (not a test): does it scale with due customers only?

Against the Redis in LTV_REDIS_URL, fills the schedules of 8 partitions with
``--due`` entries already due and ``--waiting`` entries due in 10 days, then
times ``InactivityTimer.tick()`` (the real DUE script with its retry bump,
the real store) with a topic stand-in that only counts sends (the Kafka
producer's per-record cost is left out). Each scenario gets fresh keys;
everything is deleted afterwards.

    .venv/bin/python -m bench.inactivity --due 1000 --waiting 0 100000 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from faust.types import TP
from prometheus_client import CollectorRegistry

from bench.store import CHANGELOG, _store
from ltv.valuation import ValuationConfig
from state.customer import StateConfig
from state.fx import load_fx_table
from state.store import RedisStore
from streams.inactivity import InactivityTimer
from streams.metrics import Metrics
from streams.processing import Processor

PARTITIONS = 8


class _Topic:
    """Counts the records a tick would publish."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, **_: Any) -> None:
        self.sent += 1


async def scenario(due: int, waiting: int, repeats: int = 5) -> tuple[float, int]:
    """Median tick seconds over ``repeats`` fresh fills, and records sent per tick."""
    timings, sent = [], 0
    for _ in range(repeats):
        store = _store(f"bench-inact-{uuid.uuid4().hex[:8]}")
        await store.on_rebalance({TP(CHANGELOG, p) for p in range(PARTITIONS)}, set(), set())
        now = time.time()
        pipe = store._sync.pipeline(transaction=False)
        for p in range(PARTITIONS):
            key = store.layout.index_key(p, "schedule")
            scores = {f"w-{i}": now + 10 * 86400 + i for i in range(p, waiting, PARTITIONS)}
            scores.update({f"d-{i}": now - 60 for i in range(p, due, PARTITIONS)})
            members = list(scores.items())
            for start in range(0, len(members), 10_000):
                pipe.zadd(key, dict(members[start : start + 10_000]))
        pipe.execute()
        topic = _Topic()
        processor = Processor(
            StateConfig(fx=load_fx_table(None, "USD")),
            ValuationConfig(),
            base_currency="USD",
            max_bytes=65536,
        )

        def current(s: RedisStore = store) -> RedisStore:
            return s

        timer = InactivityTimer(current, topic, processor, Metrics(CollectorRegistry()))  # type: ignore[arg-type]
        started = time.perf_counter()
        sent = await timer.tick()
        timings.append(time.perf_counter() - started)
        store.reset_state()
        await store._async.aclose()
    return sorted(timings)[len(timings) // 2], sent


async def main_async(due: list[int], waiting: list[int]) -> None:
    print(f"{'due':>8} {'not due':>10} {'sent':>6} {'tick ms':>9}")
    for d in due:
        for w in waiting:
            seconds, sent = await scenario(d, w)
            print(f"{d:>8} {w:>10} {sent:>6} {seconds * 1000:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--due", type=int, nargs="+", default=[0, 1000])
    parser.add_argument("--waiting", type=int, nargs="+", default=[0, 100_000])
    args = parser.parse_args()
    asyncio.run(main_async(args.due, args.waiting))


if __name__ == "__main__":
    main()
