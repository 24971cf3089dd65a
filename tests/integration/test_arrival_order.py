"""Any arrival order, any age: a real worker ends in the oracle's states.

Two of the hardest orders a shop produces:

* three years of history published in a random permutation (every record
  anywhere: refunds years before their orders, duplicates at any distance);
* a backfill that publishes every cancellation first and the purchases
  afterwards, in date order (``ltv backfill`` of one JSONL file): the worst
  skew between the two topics. Only the cancellations whose order never
  exists may be reported, as unknown_order notices, each once.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest
from mixed_stream import (
    MixedStream,
    Report,
    build_stream,
    check_dead_letters,
    check_stored,
    check_updates,
    stored_states,
)
from pipeline_harness import consume_raw, deployed, produce, require_servers, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

#: No inactivity tick: the oracle models event-driven transitions only.
NO_TICKS = {"LTV_INACTIVITY_INTERVAL": "86400"}


async def test_three_years_in_a_random_permutation(tmp_path: Path) -> None:
    require_servers()
    async with deployed(tmp_path, extra_env=NO_TICKS) as dep:
        built = build_stream(dep.purchases, dep.cancellations, events=4000, seed=31, garbage_rate=0)
        records = list(built.records)
        random.Random(32).shuffle(records)
        stream = MixedStream(dep.purchases, dep.cancellations, records, records, Counter())
        oracle = stream.oracle()
        spans = [s.last_order_at - s.first_order_at for s in oracle.states.values() if s.orders]
        assert max(d for d in spans if d is not None) > timedelta(days=2 * 365)
        worker = dep.start_worker()
        await produce(records, bootstrap=dep.bootstrap)

        report = Report(events_in=len(records))
        updates = await consume_raw(dep.updates, oracle.applied, timeout=180, settle=2.0)
        check_updates(report, updates, oracle.states)
        letters = await consume_raw(dep.dead_letter, 0, settle=1.0, bootstrap=dep.bootstrap)
        decoded = [orjson.loads(v) for v in letters]
        check_dead_letters(report, decoded, Counter(), oracle.may_notice)

        def stored_ok() -> bool:
            probe = Report()
            check_stored(
                probe, stored_states(dep.redis_url, dep.app_id, dep.partitions), oracle.states
            )
            return not probe.problems

        wait_until(stored_ok, 60.0, lambda: f"Redis differs from the oracle\n{worker.tail()}")
        assert not report.problems, report.problems[:10]
        assert oracle.outcomes["duplicate"] > 100  # redeliveries at any distance were dropped


#: Cancellations of orders that never exist, dated in the history's first months.
UNMATCHED = 12


async def test_backfill_of_every_cancellation_before_any_purchase(tmp_path: Path) -> None:
    require_servers()
    env = {"LTV_INACTIVITY_INTERVAL": "1"}  # the timer looks for due notices every second
    async with deployed(tmp_path, extra_env=env) as dep:
        built = build_stream(dep.purchases, dep.cancellations, events=3000, seed=41, garbage_rate=0)
        events = [orjson.loads(value) for _, _, value in built.valid]
        customers = sorted({e["customer_id"] for e in events})
        rng = random.Random(42)
        ghosts = []
        for n in range(UNMATCHED):
            ghosts.append(
                {
                    "event_id": f"ghost-{n}",
                    "order_id": f"never-{n}",
                    "customer_id": rng.choice(customers),
                    "occurred_at": f"2023-0{1 + n % 6}-1{n % 10}T08:00:00+00:00",
                    "amount": "5.00",
                    "scope": "order",
                }
            )
        cancellations = [e for e in events if "scope" in e] + ghosts
        purchases = sorted(
            (e for e in events if "scope" not in e),
            key=lambda e: datetime.fromisoformat(e["occurred_at"]),
        )
        path = tmp_path / "history.jsonl"
        lines = [orjson.dumps({**e, "type": "cancellation"}) for e in cancellations]
        lines += [orjson.dumps(e) for e in purchases]
        path.write_bytes(b"\n".join(lines) + b"\n")
        sent = [(dep.cancellations, b"", orjson.dumps(e)) for e in cancellations] + [
            (dep.purchases, b"", orjson.dumps(e)) for e in purchases
        ]
        oracle = MixedStream(dep.purchases, dep.cancellations, sent, sent, Counter()).oracle()
        assert {f"ghost-{n}" for n in range(UNMATCHED)} <= oracle.may_notice

        worker = dep.start_worker()
        dep.run_ltv(worker, "backfill", str(path))

        ghost_ids = {g["event_id"] for g in ghosts}
        notices: set[str] = set()

        def all_noticed(values: list[bytes]) -> bool:
            notices.update(orjson.loads(orjson.loads(v)["value"])["event_id"] for v in values)
            return ghost_ids <= notices

        letters = await consume_raw(dep.dead_letter, all_noticed, timeout=180, settle=3.0)
        decoded = [orjson.loads(v) for v in letters]
        assert {d["error"]["code"] for d in decoded} == {"unknown_order"}, decoded[:3]
        assert notices == ghost_ids, sorted(notices - ghost_ids)[:5]
        assert all(d["offset"] == -1 for d in decoded)  # no input record was refused

        def caught_up() -> bool:
            stored = stored_states(dep.redis_url, dep.app_id, dep.partitions)
            return all(
                c in stored and stored[c].orders == s.orders and stored[c].net == s.net
                for c, s in oracle.states.items()
            )

        wait_until(caught_up, 120.0, lambda: f"backfill never caught up\n{worker.tail()}")
        stored = stored_states(dep.redis_url, dep.app_id, dep.partitions)
        # Inactivity ticks run on the wall clock: risk levels and their versions
        # move on their own. Everything else is the oracle's, ghosts held.
        report = Report()
        flat = {c: replace(s, version=0) for c, s in stored.items()}
        want = {c: replace(s, version=0) for c, s in oracle.states.items()}
        for customer, state in flat.items():
            held = {
                oid: tuple(replace(h, notified=False) for h in hs)
                for oid, hs in state.pending.items()
            }
            flat[customer] = replace(state, pending=held)
        check_stored(report, flat, want)
        assert not report.problems, report.problems[:10]
        held = {h.event_id for s in stored.values() for hs in s.pending.values() for h in hs}
        assert held == ghost_ids
