"""Processor side of time-driven churn: next checks and the inactivity record (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from processor_fixtures import processor, purchase

from streams.processing import NextCheck, Processor, Record, Result

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
GAP = timedelta(days=30)
LAST = T0 + 4 * GAP  # fifth purchase


def tick(p: Processor, stored: bytes | None, now: datetime) -> Result:
    record = Record("t-inactivity", 0, 0, b"c-1", orjson.dumps({"due": now.timestamp()}))
    return p.handle("inactivity", record, stored, now)


def bodies(result: Result, kind: str) -> list[dict[str, Any]]:
    return [orjson.loads(o.value) for o in result.outputs if o.kind == kind]


def regular_buyer(p: Processor) -> tuple[bytes, int]:
    """Five purchases 30 days apart, each processed when it happened."""
    stored: bytes | None = None
    for n in range(5):
        at = T0 + n * GAP
        result = p.handle("purchase", purchase(n, at), stored, at)
        stored = result.state
    assert stored is not None and result.next_check == NextCheck(LAST + 1.5 * GAP)
    return stored, bodies(result, "update")[-1]["version"]


def test_silent_customer_goes_low_medium_high_with_consecutive_versions() -> None:
    p = processor()
    stored, version = regular_buyer(p)
    early = tick(p, stored, LAST + 1.5 * GAP - timedelta(seconds=1))
    assert early.outputs == [] and early.state is None
    assert early.next_check == NextCheck(LAST + 1.5 * GAP)
    levels = []
    for at, then in ((LAST + 1.5 * GAP, LAST + 3 * GAP), (LAST + 3 * GAP, None)):
        result = tick(p, stored, at)
        assert result.state is not None and result.next_check == NextCheck(then)
        (update,) = bodies(result, "update")
        (churn,) = bodies(result, "churn")
        version += 1
        assert update["version"] == churn["version"] == version
        assert update["cause"] == {"type": "inactivity", "event_id": None}
        assert churn["cause"] == "inactivity" and churn["current"] == update["churn_risk"]
        levels.append((churn["previous"], churn["current"]))
        stored = result.state
    assert levels == [("low", "medium"), ("medium", "high")]
    again = tick(p, stored, LAST + 4 * GAP)  # a duplicate or late record changes nothing
    assert again.outputs == [] and again.state is None and again.next_check == NextCheck(None)


def test_a_purchase_after_the_entry_fell_due_makes_the_tick_stale() -> None:
    p = processor()
    stored, _ = regular_buyer(p)
    comeback = LAST + 2 * GAP
    bought = p.handle("purchase", purchase(9, comeback), stored, comeback)
    assert bought.state is not None
    stale = tick(p, bought.state, comeback + timedelta(minutes=5))
    assert stale.outputs == [] and stale.state is None
    assert stale.next_check is not None and stale.next_check.at is not None
    assert stale.next_check.at > comeback + GAP


def test_held_cancellation_is_scheduled_and_expired_by_the_tick() -> None:
    p = processor()
    stored, _ = regular_buyer(p)
    body = {
        "event_id": "x-1",
        "order_id": "never-bought",
        "customer_id": "c-1",
        "occurred_at": LAST.isoformat(),
        "scope": "order",
    }
    cancel = Record("orders.cancellations", 0, 1, b"c-1", orjson.dumps(body))
    held = p.handle("cancellation", cancel, stored, LAST)
    assert held.outcome == "held" and held.state is not None
    expiry = LAST + timedelta(days=30, microseconds=1)
    assert held.next_check == NextCheck(expiry)
    result = tick(p, held.state, expiry)
    assert result.outcome == "expired" and result.dead_letter_codes == ["unknown_order"]
    assert result.state is not None and bodies(result, "update") == []
    assert result.next_check == NextCheck(LAST + 1.5 * GAP)


def test_unknown_customer_is_unscheduled() -> None:
    result = tick(processor(), None, T0)
    assert result.outputs == [] and result.next_check == NextCheck(None)
