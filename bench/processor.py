"""Microseconds per ``Processor.handle`` on the demo mix, with a fitted model.

The events of ``ltv demo --customers N`` (default 50 000 customers, first
100 000 events) go through the processor twice, in order, with the table
kept in a dict as the worker's store would:

1. without a model, to build the customers' states, which are then fitted
   the way the periodic fit does (``streams.fit``);
2. from empty again with that model in force: each ``handle`` is timed.

It prints the mean, p50 and p99 in microseconds per event and the mix of
outcomes. No Kafka, no Redis: this is the processor alone.

``--parts`` then times the parts of ``handle`` one by one on the same
inputs: the contract's validation of the purchases, the same check through
pydantic-core's JSON parser and through a model derived from the contract
with pydantic-core's built-in types only (no Python validator: the floor of
any validation that pydantic performs), the state codec and its deflate
alone, the valuation, the risk outlook and the rendering of the update.

    .venv/bin/python bench/processor.py [--customers 50000] [--events 100000]
        [--profile] [--parts]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from itertools import islice
from typing import Any, TypeVar, get_args, get_origin

import orjson
from pydantic import BaseModel, create_model

from ltv.insights import InsightsConfig
from ltv.schedule import risk_outlook
from ltv.valuation import value
from state import envelope
from state.codec import decode_state, deflate, encode_body, encode_state
from state.events import Purchase, decode_purchase
from state.insights import Contribution
from streams.demo import DemoEvent, DemoFeed, default_start
from streams.fit import Population, fit_population
from streams.processing import CauseFields, EventType, Processor, Record
from streams.settings import Settings
from streams.wiring import build_processor

TOPICS: dict[EventType, str] = {
    "purchase": "purchases",
    "cancellation": "cancellations",
    "feedback": "feedback",
}


def records(events: Iterable[DemoEvent]) -> list[tuple[EventType, Record]]:
    """Input events as the records a worker reads, offsets counted per topic."""
    offsets: Counter[str] = Counter()
    out: list[tuple[EventType, Record]] = []
    for event in events:
        topic = TOPICS[event.kind]
        record = Record(topic, 0, offsets[topic], event.key.encode(), orjson.dumps(event.value))
        offsets[topic] += 1
        out.append((event.kind, record))
    return out


def demo_records(customers: int, events: int, seed: int = 1) -> list[tuple[EventType, Record]]:
    """The first ``events`` of the demo feed as input records."""
    start = default_start(datetime(2026, 12, 1, tzinfo=UTC))
    return records(islice(DemoFeed(customers, seed, start), events))


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


_T = TypeVar("_T")


def per_item_us(work: Callable[[_T], object], items: Sequence[_T]) -> float:
    """Mean wall microseconds of ``work`` over ``items`` (best of two passes)."""
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        for item in items:
            work(item)
        best = min(best, time.perf_counter() - started)
    return best / len(items) * 1e6


def builtin_types_only(model: type[BaseModel]) -> type[BaseModel]:
    """``model`` with each field's bare type: no constraint, no Python validator.

    Derived from the contract, so it checks the same field names, types,
    nesting and defaults; what pydantic-core spends on it is the least any
    pydantic validation of these events can cost.
    """

    def bare(annotation: Any) -> Any:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return builtin_types_only(annotation)
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is None or not args:
            return annotation
        if origin is tuple:
            return tuple[tuple(bare(a) if a is not Ellipsis else a for a in args)]  # type: ignore[misc]
        return bare(args[0]) | bare(args[1]) if len(args) == 2 else annotation

    fields: dict[str, Any] = {
        name: (bare(info.annotation), ... if info.is_required() else info.default)
        for name, info in model.model_fields.items()
    }
    return create_model(f"Bare{model.__name__}", **fields)


def parts(processor: Processor, records: list[tuple[EventType, Record]], now: datetime) -> None:
    """Print what each part of ``handle`` costs on the timed pass's inputs."""
    fx = processor.state_cfg.fx
    purchases = [r.value for kind, r in records if kind == "purchase"]
    bare = builtin_types_only(Purchase)
    table, *_ = run(processor, records, now)
    stored = [envelope.state_of(v) for v in table.values()]
    states = [decode_state(raw) for raw in stored]
    bodies = [encode_body(s) for s in states]
    figures = [processor.figures(s, now) for s in states]
    model, cfg = processor.model, processor.valuation_cfg
    valuations = [value(f, model, cfg, now) for f in figures]
    cause: CauseFields = {"type": "purchase", "event_id": "e-1"}
    insights_cfg = processor.insights_cfg or InsightsConfig(basis=cfg.basis)

    rows = [
        (
            "validate a purchase (the contract: orjson + validate_python)",
            per_item_us(lambda raw: decode_purchase(raw, fx=fx), purchases),
        ),
        (
            "  the same, pydantic-core's JSON parser (model_validate_json)",
            per_item_us(Purchase.model_validate_json, purchases),
        ),
        (
            "  built-in types only, no Python validator (the floor)",
            per_item_us(bare.model_validate_json, purchases),
        ),
        ("  orjson.loads alone", per_item_us(orjson.loads, purchases)),
        ("decode a stored state", per_item_us(decode_state, stored)),
        ("encode a state", per_item_us(encode_state, states)),
        ("  of which deflate", per_item_us(deflate, bodies)),
        ("valuation figures of a state", per_item_us(lambda s: processor.figures(s, now), states)),
        (
            "value (BTYD, gamma-gamma, formulas)",
            per_item_us(lambda f: value(f, model, cfg, now), figures),
        ),
        (
            "risk outlook (next check)",
            per_item_us(lambda f: risk_outlook(f, model, cfg.thresholds, now), figures),
        ),
        (
            "insights contribution (Contribution.of + encode)",
            per_item_us(
                lambda sv: Contribution.of(sv[0], sv[1], insights_cfg, sv[0].nps_class).encode(),
                list(zip(states, valuations, strict=True)),
            ),
        ),
        (
            "render an update",
            per_item_us(
                lambda sv: processor.update_body(sv[0], cause, sv[0].version, sv[1], now),
                list(zip(states, valuations, strict=True)),
            ),
        ),
    ]
    print(f"parts of handle over {len(purchases)} purchases, {len(states)} states (us each):")
    for label, us in rows:
        print(f"  {label:<64} {us:7.1f}")


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true", help="cProfile the timed pass")
    parser.add_argument("--parts", action="store_true", help="then time the parts of handle")
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
    if args.parts:
        parts(processor, records, now)


if __name__ == "__main__":
    main()
