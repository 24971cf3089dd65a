"""A mixed stream through a real worker ends in the states an oracle computes.

20 000 events from the synthetic shop, locally shuffled (out of order within
a customer), with re-sent duplicates, cancellations racing their purchases
on the other topic, and 1 % garbage of every failure class.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from pipeline_harness import Deployment, consume, produce, require_servers

from state.customer import CustomerState, StateConfig, apply_cancellation, apply_purchase, new_state
from state.events import decode_cancellation, decode_purchase
from state.fx import load_fx_table
from streams.demo import DemoFeed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

EVENTS = 20_000
CENT = Decimal("0.01")


def _garbage(rng: random.Random, topic: str, n: int) -> tuple[tuple[str, bytes, bytes], str]:
    """One bad record and the dead-letter code it must get."""
    body: dict[str, Any] = {
        "event_id": f"g-{n}",
        "order_id": f"go-{n}",
        "customer_id": f"g-{n}",
        "occurred_at": "2025-03-01T00:00:00Z",
        "amount": "1.00",
        "currency": "USD",
    }
    key = body["customer_id"].encode()
    kind = n % 6
    if kind == 0:
        return (topic, key, b"\xff\xfe{not json"), "invalid_json"
    if kind == 1:
        return (topic, key, orjson.dumps({**body, "amount": "-5"})), "schema"
    if kind == 2:
        return (topic, key, orjson.dumps({**body, "currency": "XYZ"})), "unknown_currency"
    if kind == 3:
        return (topic, b"someone-else", orjson.dumps(body)), "key_mismatch"
    if kind == 4:
        return (topic, key, orjson.dumps({**body, "note": "x" * 70_000})), "too_large"
    return (topic, key, orjson.dumps({**body, "occurred_at": "2025-03-01T00:00:00"})), "schema"


def _stream(dep: Deployment) -> tuple[list[tuple[str, bytes, bytes]], Counter[str], list[Any]]:
    rng = random.Random(20_000)
    feed = DemoFeed(6000, seed=5, start=datetime(2025, 1, 1, tzinfo=UTC), span_days=200)
    timed = []
    for ev in feed:
        topic = dep.purchases if ev.kind == "purchase" else dep.cancellations
        # Out of order: each record is sent as if it occurred up to 3 days later.
        jitter = timedelta(days=rng.uniform(0, 3))
        at = datetime.fromisoformat(ev.value["occurred_at"]) + jitter
        timed.append((at, (topic, ev.key.encode(), orjson.dumps(ev.value))))
        if len(timed) >= EVENTS * 0.94:
            break
    timed.sort(key=lambda pair: pair[0])
    good = [record for _, record in timed]
    # Duplicates: 5 % re-sent a little later.
    records = list(good)
    for _ in range(int(EVENTS * 0.05)):
        i = rng.randrange(len(good))
        records.insert(min(len(records), i + rng.randint(1, 200)), good[i])
    codes: Counter[str] = Counter()
    for n in range(EVENTS - len(records)):
        record, code = _garbage(rng, dep.purchases if n % 2 else dep.cancellations, n)
        records.insert(rng.randrange(len(records)), record)
        codes[code] += 1
    return records, codes, good


def _oracle(good: list[tuple[str, bytes, bytes]], purchases_topic: str) -> dict[str, CustomerState]:
    """Final states from the pure transitions, applied in event-time order."""
    fx = load_fx_table(None, "USD")
    cfg = StateConfig(fx=fx, pending_window=timedelta(days=30), ledger_window=timedelta(days=90))
    decoded = []
    for topic, _, value in good:
        if topic == purchases_topic:
            decoded.append(decode_purchase(value, fx=fx))
        else:
            decoded.append(decode_cancellation(value, fx=fx))
    decoded.sort(key=lambda e: (e.occurred_at, e.event_id))
    states: dict[str, CustomerState] = {}
    for e in decoded:
        state = states.get(e.customer_id) or new_state(e.customer_id)
        apply = apply_purchase if topic_is_purchase(e) else apply_cancellation
        states[e.customer_id] = apply(state, e, cfg).state  # type: ignore[arg-type]
    return states


def topic_is_purchase(e: object) -> bool:
    return hasattr(e, "currency") and hasattr(e, "items")


async def test_mixed_stream_matches_the_oracle(tmp_path: Path) -> None:
    require_servers()
    dep = Deployment(tmp_path)
    try:
        worker = dep.start_worker()
        records, codes, good = _stream(dep)
        assert len(records) == EVENTS
        await produce(records)
        oracle = _oracle(good, dep.purchases)
        expected_updates = sum(s.version for s in oracle.values())

        dead = await consume(dep.dead_letter, sum(codes.values()), timeout=240, settle=1.0)
        assert Counter(d["error"]["code"] for d in dead) == codes
        updates = await consume(dep.updates, expected_updates, timeout=240, settle=2.0)
        assert len(updates) == expected_updates, worker.tail()

        last: dict[str, dict[str, Any]] = {}
        versions: dict[str, list[int]] = {}
        for u in updates:
            versions.setdefault(u["customer_id"], []).append(u["version"])
            if u["version"] >= last.get(u["customer_id"], {}).get("version", 0):
                last[u["customer_id"]] = u
        mismatches = []
        for customer_id, state in oracle.items():
            got = last.get(customer_id)
            if state.version == 0:
                if got is not None:
                    mismatches.append((customer_id, "unexpected update"))
                continue
            want = (state.version, state.orders, str(state.net.quantize(CENT)))
            have = None if got is None else (got["version"], got["orders"], got["net_revenue"])
            if have != want:
                mismatches.append((customer_id, want, have))
            if sorted(versions.get(customer_id, [])) != list(range(1, state.version + 1)):
                mismatches.append((customer_id, "versions", sorted(versions[customer_id])))
        assert not mismatches, mismatches[:10]
    finally:
        await dep.cleanup()
