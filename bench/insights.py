"""Cost of the live group aggregates (docs/insights.md) on the demo shop.

Builds every customer's state from the events of the demo shop (``ltv demo``:
purchases, refunds, NPS answers) in-process, with the worker's processor
against a dict table as bench/processor.py does, fits a model and values
each customer with it. Then it measures what the aggregates add:

* CPU per written event: ``Contribution.of`` plus its encoding, what the
  processor computes for every write (the rest of ``Processor.handle`` is in
  ``bench/processor.py --parts``);
* Redis, through the store's own write script (``state.store.scripts.WRITE``)
  on a scratch app id: every customer's contribution written once, then
  rewritten (the script subtracts the stored one and adds the new), timed
  per customer; the bytes of the contributions and sums hashes
  (``MEMORY USAGE``) per customer and per partition;
* the read: every partition's sums in one pipeline, merged, and
  ``insights()`` on them (what ``GET /insights`` does).

    .venv/bin/python bench/insights.py [--customers 50000] [--partitions 8]
        [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

from processor import per_item_us, records, run

from ltv.insights import InsightsConfig, insights
from ltv.valuation import value
from state import envelope
from state.insights import Aggregate, Contribution
from state.store.config import StoreConfig
from state.store.keys import INDEXES, KeyLayout
from state.store.scripts import CLAIM, WRITE
from state.store.sums import read_sums
from streams.demo import DemoFeed, default_cac, default_start
from streams.fit import Population, fit_population
from streams.settings import Settings
from streams.wiring import build_processor

#: Customers per WRITE call, as the store's flushes send them (a batch's keys).
CHUNK = 500


async def redis_costs(
    url: str, partitions: int, encoded: list[tuple[bytes, bytes]], cfg: InsightsConfig
) -> dict[str, float]:
    """Write, rewrite and read every contribution through the store's scripts."""
    client: Any = StoreConfig.from_url(url).async_client()
    layout = KeyLayout(f"bench-insights-{uuid.uuid4().hex[:8]}", "customers")
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, contribution in encoded:
        by_partition.setdefault(zlib.crc32(key) % partitions, []).append((key, contribution))
    try:
        epochs = {}
        for p in range(partitions):
            keys = layout.keys(p)
            epochs[p] = (await client.eval(CLAIM.source, len(keys), *keys))[0]

        async def write_all() -> float:
            started = time.perf_counter()
            for p, items in by_partition.items():
                keys = layout.keys(p)
                for i in range(0, len(items), CHUNK):
                    chunk = items[i : i + CHUNK]
                    counts = ["0", "0", str(len(chunk)), *["0"] * (2 * len(INDEXES)), "0"]
                    tallies = [part for pair in chunk for part in pair]
                    args = [str(epochs[p]), "", *counts, *tallies]
                    assert await client.evalsha(WRITE.sha, len(keys), *keys, *args) == 1
            return (time.perf_counter() - started) / len(encoded) * 1e6

        await client.script_load(WRITE.source)
        first_us = await write_all()
        again_us = await write_all()  # each replaces an equal one: subtract, add, store
        contributions = sums = 0
        for p in range(partitions):
            contributions += await client.memory_usage(layout.contributions_key(p)) or 0
            sums += await client.memory_usage(layout.sums_key(p)) or 0
        started = time.perf_counter()
        merged = Aggregate()
        for part in (await read_sums(client, layout, range(partitions))).values():
            merged.merge(Aggregate(part))
        figures = insights(merged, datetime.now(UTC), cfg)
        read_ms = (time.perf_counter() - started) * 1000
        counted = sum(1 for _, c in encoded if c != b"{}")  # not every order refunded
        assert figures.customers == counted, (figures.customers, counted)
        return {
            "write_us": first_us,
            "rewrite_us": again_us,
            "contributions_bytes": contributions / len(encoded),
            "sums_bytes": sums / partitions,
            "sums": len(merged),
            "read_ms": read_ms,
        }
    finally:
        for p in range(partitions):
            await client.delete(*layout.keys(p))
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    now = datetime(2026, 12, 1, tzinfo=UTC)
    feed = [e for e in DemoFeed(args.customers, 1, default_start(now)) if e.occurred_at <= now]
    recs = records(feed)
    processor = build_processor(Settings())
    table, *_ = run(processor, recs, now)
    population = Population(as_of=now, basis=processor.valuation_cfg.basis)
    population.add_all(table.values())
    model = fit_population(population, now).snapshot()
    cfg = InsightsConfig(basis=processor.valuation_cfg.basis, cac=default_cac())

    states = [envelope.customer_state(stored) for stored in table.values()]
    valued = [
        (s, value(processor.figures(s, now), model, processor.valuation_cfg, now)) for s in states
    ]
    of_us = per_item_us(
        lambda sv: Contribution.of(sv[0], sv[1], cfg, sv[0].nps_class).encode(), valued
    )
    encoded = [
        (s.customer_id.encode(), Contribution.of(s, v, cfg, s.nps_class).encode())
        for s, v in valued
    ]
    redis = asyncio.run(redis_costs(args.redis, args.partitions, encoded, cfg))
    sizes = [len(c) for _, c in encoded]

    print(f"{len(states)} customers, {len(recs)} events, model {model.version if model else None}")
    print(f"worker CPU per write: Contribution.of + encode {of_us:.1f} us")
    print(
        f"contribution in the changelog value: mean {sum(sizes) / len(sizes):.0f} bytes, "
        f"max {max(sizes)}"
    )
    print(
        f"Redis write script per customer: {redis['write_us']:.1f} us first write, "
        f"{redis['rewrite_us']:.1f} us replacing one (chunks of {CHUNK})"
    )
    print(
        f"Redis bytes: contributions {redis['contributions_bytes']:.0f} per customer; "
        f"sums {redis['sums_bytes']:.0f} per partition ({args.partitions} partitions, "
        f"{redis['sums']:.0f} sums merged)"
    )
    print(f"read (pipeline, merge, insights()): {redis['read_ms']:.1f} ms")


if __name__ == "__main__":
    main()
