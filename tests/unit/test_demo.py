"""The synthetic feed is realistic enough to exercise every path, and reproducible.

The behaviour tests measure the demo shop's business story straight from the
events, with a deliberately naive oracle (net revenue per customer from
purchases minus refunds, in USD at rough fixed rates) that shares nothing
with the service's valuation: if the dashboard shows these differences, it
is because the events carry them.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from statistics import mean

import orjson
import pytest

from state.events import decode_cancellation, decode_feedback, decode_purchase
from state.fx import load_fx_table
from streams.demo import DemoEvent, DemoFeed, cac_setting, default_cac
from streams.settings import Settings

START = datetime(2025, 1, 1, tzinfo=UTC)
#: RFC 3339 date-time with a mandatory offset, as docs/input-events.md requires.
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
#: Rough rates to USD: close enough to compare groups of customers fairly.
USD = {"SEK": Decimal("0.095"), "EUR": Decimal("1.08"), "USD": Decimal(1), "GBP": Decimal("1.27")}


@cache
def _events(customers: int = 400, seed: int = 3) -> list[DemoEvent]:
    """One feed per arguments for the whole module: the tests only read it."""
    return list(DemoFeed(customers, seed, START))


@pytest.fixture
def shop() -> list[DemoEvent]:
    """A mid-size shop: enough customers per group for stable means."""
    return _events(customers=3000, seed=7)


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    assert list(DemoFeed(400, 3, START)) == _events(seed=3)
    assert _events(seed=3) != _events(seed=4)


def test_without_feedback_the_rest_of_the_stream_is_the_same() -> None:
    orders_only = list(DemoFeed(400, 3, START, feedback=False))
    assert orders_only == [e for e in _events() if e.kind != "feedback"]


def test_mix_of_customers_and_event_kinds() -> None:
    events = _events()
    kinds = Counter(e.kind for e in events)
    assert kinds["purchase"] > kinds["feedback"] > kinds["cancellation"] > 0
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
    feedback = [e.value for e in events if e.kind == "feedback"]
    assert len({v["score"] for v in feedback}) >= 9  # the whole scale is in use
    assert any("comment" in v for v in feedback) and any("comment" not in v for v in feedback)


def _check_feedback(body: dict[str, object]) -> None:
    """The shape the feed means to emit for ``feedback``, beyond what the decoder checks."""
    assert {"event_id", "customer_id", "occurred_at", "score"} <= body.keys()
    assert body.keys() <= {"event_id", "customer_id", "occurred_at", "score", "comment"}
    for name in ("event_id", "customer_id"):
        value = body[name]
        assert isinstance(value, str) and 1 <= len(value) <= 128 and value.isprintable()
    score = body["score"]
    assert type(score) is int and 0 <= score <= 10
    assert isinstance(body["occurred_at"], str) and RFC3339.fullmatch(body["occurred_at"])
    if "comment" in body:
        assert isinstance(body["comment"], str) and body["comment"]


def test_events_follow_the_contract() -> None:
    fx = load_fx_table()
    purchases: dict[str, dict] = {}  # type: ignore[type-arg]
    previous = START
    for event in _events():
        body = event.value
        raw = orjson.dumps(body)
        assert event.key == body["customer_id"]
        assert RFC3339.fullmatch(body["occurred_at"])
        at = datetime.fromisoformat(body["occurred_at"])
        assert at.tzinfo is not None and at >= previous
        previous = at
        if event.kind == "purchase":
            decode_purchase(raw, fx=fx)
            lines = sum(Decimal(i["unit_price"]) * i["quantity"] for i in body["items"])
            assert Decimal(body["amount"]) == lines >= 0
            assert 0 <= body["margin_rate"] <= 1
            purchases[body["order_id"]] = body
        elif event.kind == "cancellation":
            decode_cancellation(raw, fx=fx)
            order = purchases[body["order_id"]]  # cancels a known, earlier order
            assert order["customer_id"] == body["customer_id"]
            if "amount" in body:
                assert Decimal(body["amount"]) <= Decimal(order["amount"])
        else:
            assert event.kind == "feedback"
            decode_feedback(raw)
            _check_feedback(body)
            assert any(p["customer_id"] == body["customer_id"] for p in purchases.values())


def test_resent_events_keep_their_event_id(shop: list[DemoEvent]) -> None:
    events = shop
    ids = Counter(e.value["event_id"] for e in events)
    duplicated = [i for i, n in ids.items() if n > 1]
    assert duplicated, "the feed should include a few producer retries"
    by_id: dict[str, DemoEvent] = {}
    for e in events:
        assert by_id.setdefault(e.value["event_id"], e) == e
    assert {by_id[i].kind for i in duplicated} == {"purchase", "cancellation", "feedback"}


def test_rejects_naive_start() -> None:
    with pytest.raises(ValueError, match="time zone"):
        DemoFeed(1, 1, datetime(2025, 1, 1))


def test_default_demo_size_stays_near_five_events_per_customer() -> None:
    """Benches compare runs over the feed: its size moved little when feedback came."""
    events = _events(2000, 1)
    assert 4.0 <= len(events) / 2000 <= 6.0
    orders_only = sum(1 for e in events if e.kind != "feedback")
    assert 3.5 <= orders_only / 2000 <= 5.0


def test_default_cac_is_a_valid_setting_for_every_channel_of_the_feed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LTV_CAC", cac_setting())
    assert Settings().cac == default_cac()
    channels = {e.value["channel"] for e in _events() if e.kind == "purchase"}
    assert channels == default_cac().keys()


# ------------------------------------------------------------------- the shop's behaviour


def net_revenue(events: list[DemoEvent]) -> dict[str, Decimal]:
    """Per customer: purchases minus refunds in USD, each event counted once."""
    seen: set[str] = set()
    orders: dict[str, tuple[Decimal, str]] = {}  # order id -> amount left, currency
    net: dict[str, Decimal] = defaultdict(Decimal)
    for event in events:
        body = event.value
        if event.kind == "feedback" or body["event_id"] in seen:
            continue
        seen.add(body["event_id"])
        if event.kind == "purchase":
            orders[body["order_id"]] = (Decimal(body["amount"]), body["currency"])
            net[event.key] += Decimal(body["amount"]) * USD[body["currency"]]
        elif body.get("scope") != "subscription":
            left, currency = orders[body["order_id"]]
            refund = min(left, Decimal(body.get("amount", left)))
            orders[body["order_id"]] = (left - refund, currency)
            net[event.key] -= refund * USD[currency]
    return net


def ratio(
    events: list[DemoEvent], better: Callable[[str], bool], worse: Callable[[str], bool]
) -> float:
    """Mean net revenue of the ``better`` customers over that of the ``worse`` ones."""
    net = net_revenue(events)
    high = [float(v) for c, v in net.items() if better(c)]
    low = [float(v) for c, v in net.items() if worse(c)]
    assert len(high) >= 100 and len(low) >= 100, "groups too small to compare"
    return mean(high) / mean(low)


def test_customers_of_three_or_more_categories_are_worth_a_multiple(
    shop: list[DemoEvent],
) -> None:
    categories: dict[str, set[str]] = defaultdict(set)
    for e in shop:
        if e.kind == "purchase":
            categories[e.key].update(item["category"] for item in e.value["items"])
    breadth = {c: len(found) for c, found in categories.items()}
    assert sum(1 for b in breadth.values() if b >= 2) < len(breadth) / 2  # a minority
    assert ratio(shop, lambda c: breadth[c] >= 3, lambda c: breadth[c] == 1) >= 2.5


def test_promoters_are_worth_twice_the_detractors(shop: list[DemoEvent]) -> None:
    latest = {e.key: e.value["score"] for e in shop if e.kind == "feedback"}
    feedback = sum(1 for e in shop if e.kind == "feedback")
    orders = sum(1 for e in shop if e.kind == "purchase")
    assert 0.25 <= feedback / orders <= 0.35

    def promoter(customer: str) -> bool:
        return latest.get(customer, -1) >= 9

    def detractor(customer: str) -> bool:
        return 0 <= latest.get(customer, -1) <= 6

    assert ratio(shop, promoter, detractor) >= 2.0


def test_referral_customers_are_worth_more_than_paid_search(shop: list[DemoEvent]) -> None:
    channel = {e.key: e.value["channel"] for e in shop if e.kind == "purchase"}
    assert (
        ratio(shop, lambda c: channel[c] == "referral", lambda c: channel[c] == "paid_search")
        >= 1.5
    )
