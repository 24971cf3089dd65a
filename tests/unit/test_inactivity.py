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


def cancellation(event_id: str, order_id: str, at: datetime) -> Record:
    body = {
        "event_id": event_id,
        "order_id": order_id,
        "customer_id": "c-1",
        "occurred_at": at.isoformat(),
        "scope": "order",
    }
    return Record("orders.cancellations", 0, 1, b"c-1", orjson.dumps(body))


def test_held_cancellation_is_noticed_by_purchases_progress_never_by_the_clock() -> None:
    p = processor()
    stored, _ = regular_buyer(p)  # purchases partition 0 has reached LAST
    held = p.handle("cancellation", cancellation("x-1", "never-bought", LAST), stored, LAST)
    assert held.outcome == "held" and held.state is not None
    due = LAST + timedelta(days=30)
    assert held.notice_at == NextCheck(due)
    # The clock a year on reports nothing: only purchases progress does.
    late = tick(p, held.state, LAST + timedelta(days=365))
    assert late.dead_letter_codes == [] and late.notice_at == NextCheck(due)
    # A purchase read beyond a hole in the partition (offsets 5-8 not read yet)
    # does not move it: the missing records may hold the purchase.
    p.handle("purchase", purchase(9, due + timedelta(days=1), customer="c-3"), None, due)
    assert tick(p, held.state, due).dead_letter_codes == []
    # Another customer's purchase fills the hole and moves it past the cancellation.
    for n in range(5, 9):
        p.handle("purchase", purchase(n, due, customer="c-2"), None, due)
    result = tick(p, held.state, due)
    assert result.outcome == "notified" and result.dead_letter_codes == ["unknown_order"]
    assert result.state is not None and bodies(result, "update") == []
    (letter,) = bodies(result, "dead_letter")
    assert letter["error"]["code"] == "unknown_order" and "still held" in letter["error"]["message"]
    assert result.notice_at == NextCheck(None)  # reported once: out of the index
    assert result.next_check == NextCheck(LAST + 1.5 * GAP)
    again = tick(p, result.state, due)
    assert again.dead_letter_codes == [] and again.state is None


def test_a_cancellation_arriving_after_purchases_moved_past_it_is_noticed_at_once() -> None:
    p = processor()
    stored, _ = regular_buyer(p)
    old = LAST - timedelta(days=60)
    held = p.handle("cancellation", cancellation("x-2", "ghost", old), stored, LAST)
    assert held.outcome == "held" and held.dead_letter_codes == ["unknown_order"]
    assert held.notice_at == NextCheck(None)
    # Its purchase still comes: the refund applies, nothing more is reported.
    ghost = purchase(7, old - timedelta(days=1))
    body = orjson.loads(ghost.value) | {"order_id": "ghost"}
    record = Record(ghost.topic, 0, 7, b"c-1", orjson.dumps(body))
    assert held.state is not None
    applied = p.handle("purchase", record, held.state, LAST)
    assert applied.outcome == "applied" and applied.dead_letter_codes == []
    assert [u["cause"]["type"] for u in bodies(applied, "update")] == ["purchase", "cancellation"]
    assert applied.notice_at == NextCheck(None)


def test_unknown_customer_is_unscheduled() -> None:
    result = tick(processor(), None, T0)
    assert result.outputs == [] and result.next_check == NextCheck(None)
