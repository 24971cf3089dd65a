"""Cost of the live group aggregates (docs/insights.md) on the demo shop.

Builds every customer's state from the events of ``ltv demo --customers N``
in-process (the processor against a dict table, as bench/processor.py
does), fits a model on them and values each customer with it, then times:

* ``Contribution.of`` per customer state (what every write computes once);
* ``remove`` of the stored contribution plus ``add`` of the new one;
* ``Aggregate.encode`` and ``insights`` on the merge of all partitions.

It also prints what each customer would store next to its state: the whole
contribution, or the valuation part it is recomputed from (``Valued``).

It prints the encoded size of each of ``--partitions`` partition
aggregates (customers spread by a hash of their key) and of their merge.
The demo carries no NPS feedback: classes are spread by a hash of the
customer id so that the NPS group has its four members.

    .venv/bin/python bench/insights.py [--customers 50000] [--events 0 (all)]
        [--partitions 8]
"""

from __future__ import annotations

import argparse
import zlib
from datetime import UTC, datetime
from decimal import Decimal
from itertools import islice

from processor import per_item_us, records, run

from ltv.insights import NPS_CLASSES, InsightsConfig, insights
from ltv.valuation import value
from state import envelope
from state.customer import CustomerState
from state.insights import Aggregate, Contribution, Valued
from streams.demo import DemoFeed, default_start
from streams.fit import Population, fit_population
from streams.settings import Settings
from streams.wiring import build_processor

#: Costs per channel of the demo shop's channels ("organic" has none).
DEMO_CAC = {"paid_search": Decimal(40), "social": Decimal(25), "email": Decimal(5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=0, help="first N events (0: all)")
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    now = datetime(2026, 12, 1, tzinfo=UTC)
    feed = DemoFeed(args.customers, 1, default_start(now))
    recs = records(islice(feed, args.events) if args.events else feed)
    processor = build_processor(Settings())
    table, *_ = run(processor, recs, now)
    population = Population(as_of=now, basis=processor.valuation_cfg.basis)
    population.add_all(table.values())
    model = fit_population(population, now).snapshot()
    cfg = InsightsConfig(basis=processor.valuation_cfg.basis, cac=DEMO_CAC)

    states = [envelope.customer_state(stored) for stored in table.values()]
    valued = [
        (s, value(processor.figures(s, now), model, processor.valuation_cfg, now)) for s in states
    ]
    nps = [NPS_CLASSES[zlib.crc32(s.customer_id.encode()) % 4] for s in states]
    inputs = list(zip(valued, nps, strict=True))
    contributions = [Contribution.of(s, v, cfg, c) for (s, v), c in inputs]
    of_us = per_item_us(lambda item: Contribution.of(item[0][0], item[0][1], cfg, item[1]), inputs)

    def partition(s: CustomerState) -> int:
        return zlib.crc32(s.customer_id.encode()) % int(args.partitions)

    partitions = [Aggregate() for _ in range(args.partitions)]
    for s, c in zip(states, contributions, strict=True):
        partitions[partition(s)].add(c)
    agg = partitions[0]

    def replace(c: Contribution) -> None:
        agg.remove(c)
        agg.add(c)

    mine = [c for s, c in zip(states, contributions, strict=True) if partition(s) == 0]
    swap_us = per_item_us(replace, mine)
    merged = Aggregate()
    for part in partitions:
        merged.merge(part)
    encode_us = per_item_us(Aggregate.encode, [merged])
    read_us = per_item_us(lambda a: insights(a, now, cfg), [merged])
    sizes = [len(p.encode()) for p in partitions]
    sums = [len(c.sums) for c in contributions]
    stored = sum(len(c.encode()) for c in contributions) / len(contributions)
    parts = sum(len(Valued.of(v).encode()) for _, v in valued) / len(valued)

    print(f"{len(states)} customers, {len(recs)} events, model {model.version if model else None}")
    print(
        f"Contribution.of: {of_us:.1f} us/state (mean {sum(sums) / len(sums):.1f} sums, "
        f"max {max(sums)}); remove + add: {swap_us:.1f} us"
    )
    print(f"stored per customer: contribution {stored:.0f} bytes, or Valued {parts:.0f} bytes")
    print(
        f"{args.partitions} partition aggregates: {min(sizes)}-{max(sizes)} bytes encoded "
        f"({sum(sizes)} in all); merged: {len(merged.encode())} bytes, {len(merged)} sums"
    )
    print(f"merged encode: {encode_us / 1000:.2f} ms; insights(): {read_us / 1000:.2f} ms")


if __name__ == "__main__":
    main()
