"""The synthetic feed is realistic enough to exercise every path, and reproducible."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from streams.demo import DemoFeed

START = datetime(2025, 1, 1, tzinfo=UTC)


def _events(customers: int = 400, seed: int = 3) -> list:  # type: ignore[type-arg]
    return list(DemoFeed(customers, seed, START))


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    assert _events(seed=3) == _events(seed=3)
    assert _events(seed=3) != _events(seed=4)


def test_mix_of_customers_and_event_kinds() -> None:
    events = _events()
    kinds = Counter(e.kind for e in events)
    assert kinds["purchase"] > kinds["cancellation"] > 0
    orders = Counter(e.key for e in events if e.kind == "purchase")
    assert sum(1 for n in orders.values() if n == 1) > 50  # one-time buyers
    assert sum(1 for n in orders.values() if n >= 3) > 50  # repeat buyers
    currencies = {e.value["currency"] for e in events if e.kind == "purchase"}
    assert {"SEK", "EUR", "USD", "GBP"} <= currencies
    assert any("subscription" in e.value for e in events)
    assert any(e.value.get("scope") == "subscription" for e in events)
    partial = [e for e in events if e.kind == "cancellation" and "amount" in e.value]
    full = [e for e in events if e.kind == "cancellation" and "amount" not in e.value]
    assert partial and full


def test_events_follow_the_contract() -> None:
    purchases: dict[str, dict] = {}  # type: ignore[type-arg]
    previous = START
    for event in _events():
        body = event.value
        assert event.key == body["customer_id"]
        at = datetime.fromisoformat(body["occurred_at"])
        assert at.tzinfo is not None and at >= previous
        previous = at
        if event.kind == "purchase":
            lines = sum(Decimal(i["unit_price"]) * i["quantity"] for i in body["items"])
            assert Decimal(body["amount"]) == lines >= 0
            assert 0 <= body["margin_rate"] <= 1
            purchases[body["order_id"]] = body
        else:
            order = purchases[body["order_id"]]  # cancels a known, earlier order
            assert order["customer_id"] == body["customer_id"]
            if "amount" in body:
                assert Decimal(body["amount"]) <= Decimal(order["amount"])


def test_resent_events_keep_their_event_id() -> None:
    events = _events(customers=2000)
    ids = Counter(e.value["event_id"] for e in events)
    duplicated = [i for i, n in ids.items() if n > 1]
    assert duplicated, "the feed should include a few producer retries"
    by_id = {}
    for e in events:
        assert by_id.setdefault(e.value["event_id"], e) == e


def test_rejects_naive_start() -> None:
    with pytest.raises(ValueError, match="time zone"):
        DemoFeed(1, 1, datetime(2025, 1, 1))
