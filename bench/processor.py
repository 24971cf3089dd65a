"""Microseconds per ``Processor.handle`` on the demo mix, with a fitted model.

The events of ``ltv demo --customers N`` (default 50 000 customers, first
100 000 events) go through the processor twice, in order, with the table
kept in a dict as the worker's store would:

1. without a model, to build the customers' states, which are then fitted
   the way the periodic fit does (``streams.fit``);
2. from empty again with that model in force: each ``handle`` is timed.

It prints the mean, p50 and p99 in microseconds per event and the mix of
outcomes. No Kafka, no Redis: this is the processor alone.

    .venv/bin/python bench/processor.py [--customers 50000] [--events 100000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections import Counter
from datetime import UTC, datetime

import orjson

from state import envelope
from streams.demo import DemoFeed, default_start
from streams.fit import Population, fit_population
from streams.processing import EventType, Processor, Record
from streams.settings import Settings
from streams.wiring import build_processor

TOPICS: dict[EventType, str] = {"purchase": "purchases", "cancellation": "cancellations"}


def demo_records(customers: int, events: int, seed: int = 1) -> list[tuple[EventType, Record]]:
    """The first ``events`` of the demo feed as input records, offsets per topic."""
    start = default_start(datetime(2026, 12, 1, tzinfo=UTC))
    offsets: Counter[str] = Counter()
    out: list[tuple[EventType, Record]] = []
    for event in DemoFeed(customers, seed, start):
        if len(out) >= events:
            break
        topic = TOPICS[event.kind]
        key = event.key.encode()
        record = Record(topic, 0, offsets[topic], key, orjson.dumps(event.value))
        offsets[topic] += 1
        out.append((event.kind, record))
    return out


def run(
    processor: Processor, records: list[tuple[EventType, Record]], now: datetime
) -> tuple[dict[bytes, bytes], list[float], Counter[str], float]:
    """Handle every record against a dict table.

    Returns the table, per-event wall seconds, the outcomes and the CPU
    seconds of the whole pass (steady on a shared machine, where wall time
    also counts other processes).
    """
    table: dict[bytes, bytes] = {}
    timings: list[float] = []
    outcomes: Counter[str] = Counter()
    clock = time.perf_counter
    cpu = time.process_time()
    for kind, record in records:
        key = record.key or b""
        started = clock()
        result = processor.handle(kind, record, table.get(key), now)
        timings.append(clock() - started)
        if result.state is not None:  # Redis keeps the value without its outbox
            table[key] = envelope.without_outbox(result.state)
        outcomes[result.outcome] += 1
    return table, timings, outcomes, time.process_time() - cpu


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true", help="cProfile the timed pass")
    args = parser.parse_args()
    records = demo_records(args.customers, args.events)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    settings = Settings()
    warm = build_processor(settings)
    table, *_ = run(warm, records, now)
    population = Population(as_of=now, basis=warm.valuation_cfg.basis)
    population.add_all(table.values())
    model = fit_population(population, now).snapshot()
    assert model is not None
    processor = build_processor(settings)
    processor.model = model
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    _, timings, outcomes, cpu = run(processor, records, now)
    if profiler is not None:
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(40)
        stats.sort_stats("tottime").print_stats(30)
    timings.sort()
    mean = sum(timings) / len(timings) * 1e6
    print(
        f"Processor.handle: {cpu / len(timings) * 1e6:.1f} us/event CPU, "
        f"wall {mean:.1f} mean, p50 {percentile(timings, 0.5) * 1e6:.1f}, "
        f"p99 {percentile(timings, 0.99) * 1e6:.1f} us over {len(timings)} events "
        f"({args.customers} customers, model {model.version})"
    )
    print("outcomes:", dict(sorted(outcomes.items())))


if __name__ == "__main__":
    main()
