"""Focused examples of the CustomerState transitions."""

# Money figures are Decimal and compared with int literals on purpose (exact equality).
# mypy: disable-error-code="comparison-overlap"

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from state.customer import (
    CustomerState,
    StateConfig,
    apply_cancellation,
    apply_purchase,
    id_hash,
    new_state,
    notice_due,
    notify_unmatched,
    set_risk,
)
from state.events import Cancellation, Purchase
from state.fx import load_fx_table

FX = load_fx_table(base="SEK")
CFG = StateConfig(fx=FX, default_margin=Decimal("0.5"))
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def buy(order: str, amount: str, day: float = 0, **kw: Any) -> Purchase:
    doc: dict[str, Any] = {
        "event_id": f"p-{order}",
        "order_id": order,
        "customer_id": "c",
        "occurred_at": (T0 + timedelta(days=day)).isoformat(),
        "amount": amount,
        "currency": "SEK",
        **kw,
    }
    return Purchase.model_validate(doc)


def cancel(
    event: str, order: str, day: float = 0, amount: str | None = None, **kw: Any
) -> Cancellation:
    doc: dict[str, Any] = {
        "event_id": event,
        "order_id": order,
        "customer_id": "c",
        "occurred_at": (T0 + timedelta(days=day)).isoformat(),
        **kw,
    }
    if amount is not None:
        doc["amount"] = amount
    return Cancellation.model_validate(doc)


def run(*events: Purchase | Cancellation, cfg: StateConfig = CFG) -> CustomerState:
    state = new_state("c")
    for e in events:
        t = (
            apply_purchase(state, e, cfg)
            if isinstance(e, Purchase)
            else apply_cancellation(state, e, cfg)
        )
        state = t.state
    return state


def test_purchase_applies_and_counts() -> None:
    t = apply_purchase(new_state("c"), buy("o1", "100", margin_rate=0.25, channel="seo"), CFG)
    assert t.outcome == "applied"
    assert [a.kind for a in t.applied] == ["purchase"]
    s = t.state
    assert (s.orders, s.net, s.gross, s.margin, s.version) == (1, 100, 100, 25, 1)
    assert s.channel == "seo" and s.purchase_days == 1
    assert {"orders", "net", "channel"} <= t.changed


def test_transitions_do_not_mutate_their_input() -> None:
    s0 = run(buy("o1", "100"))
    before = (s0.version, s0.net, dict(s0.ledger), dict(s0.days))
    apply_purchase(s0, buy("o2", "50"), CFG)
    apply_cancellation(s0, cancel("c1", "o1"), CFG)
    assert before == (s0.version, s0.net, dict(s0.ledger), dict(s0.days))


def test_second_purchase_with_known_order_id_is_a_duplicate() -> None:
    s = run(buy("o1", "100"))
    retry = buy("o1", "100").model_copy(update={"event_id": "another"})
    t = apply_purchase(s, retry, CFG)
    assert t.outcome == "duplicate" and t.state is s and t.applied == ()


def test_repeated_cancellation_event_id_is_a_duplicate() -> None:
    s = run(buy("o1", "100"), cancel("c1", "o1", amount="10"))
    t = apply_cancellation(s, cancel("c1", "o1", amount="10"), CFG)
    assert t.outcome == "duplicate" and t.state.net == 90


def test_partial_refunds_add_up_and_are_capped() -> None:
    s = run(buy("o1", "100"), cancel("c1", "o1", amount="30"), cancel("c2", "o1", amount="50"))
    assert (s.net, s.orders) == (20, 1)
    s = run(buy("o1", "100"), cancel("c1", "o1", amount="70"), cancel("c2", "o1", amount="70"))
    assert (s.net, s.orders, s.purchase_days, s.version) == (0, 0, 0, 3)


def test_full_cancellation_removes_the_order_and_its_day() -> None:
    s = run(buy("o1", "100"), buy("o2", "40", day=3), cancel("c1", "o1", day=4))
    assert (s.orders, s.net, s.gross, s.purchase_days) == (1, 40, 140, 1)
    assert s.first_order_at == T0 + timedelta(days=3)
    summary = s.btyd(T0 + timedelta(days=10))
    assert summary is not None and (summary.x, summary.t_x, summary.T) == (0, 0, 7)


def test_zero_value_order_is_an_order_until_cancelled() -> None:
    s = run(buy("o1", "0"))
    assert (s.orders, s.purchase_days) == (1, 1)
    s = run(buy("o1", "0"), cancel("c1", "o1"))
    assert (s.orders, s.purchase_days) == (0, 0)


def test_cancellation_before_purchase_is_held_then_applied() -> None:
    t = apply_cancellation(new_state("c"), cancel("c1", "o1", amount="30"), CFG)
    assert t.outcome == "held" and t.applied == () and t.state.version == 0
    t = apply_purchase(t.state, buy("o1", "100"), CFG)
    assert [a.kind for a in t.applied] == ["purchase", "cancellation"]
    assert (t.state.net, t.state.version, t.state.pending) == (70, 2, {})


def test_the_customers_own_orders_never_expire_a_held_cancellation() -> None:
    """However far the customer's purchases move on, the cancellation stays held."""
    s = run(cancel("c1", "ghost", day=0))
    t = apply_purchase(s, buy("o2", "10", day=900), CFG)
    assert t.notices == () and "ghost" in t.state.pending


def test_an_unmatched_cancellation_is_notified_once_by_purchases_progress() -> None:
    s = run(cancel("c1", "ghost", day=0))
    assert notice_due(s, CFG) == T0 + timedelta(days=30)
    assert notify_unmatched(s, None, CFG).outcome == "unchanged"  # progress unknown
    assert notify_unmatched(s, T0 + timedelta(days=30), CFG).outcome == "unchanged"
    t = notify_unmatched(s, T0 + timedelta(days=31), CFG)
    assert t.outcome == "notified" and [(o, h.event_id) for o, h in t.notices] == [("ghost", "c1")]
    assert b'"order_id":"ghost"' in t.notices[0][1].event_json("c", "ghost")
    assert "ghost" in s.pending and not s.pending["ghost"][0].notified  # input untouched
    # Still held, reported once, and no longer due.
    assert t.state.pending["ghost"][0].notified and notice_due(t.state, CFG) is None
    assert notify_unmatched(t.state, T0 + timedelta(days=400), CFG).outcome == "unchanged"
    # A redelivery is a duplicate, not a second notice.
    assert apply_cancellation(t.state, cancel("c1", "ghost"), CFG).outcome == "duplicate"


def test_a_purchase_after_the_notice_still_gets_its_refund() -> None:
    s = run(cancel("c1", "o1", amount="30", day=1))
    s = notify_unmatched(s, T0 + timedelta(days=365), CFG).state
    t = apply_purchase(s, buy("o1", "100"), CFG)
    assert [a.kind for a in t.applied] == ["purchase", "cancellation"]
    assert (t.state.net, t.state.version, t.state.pending) == (70, 2, {})
    assert t.state == run(buy("o1", "100"), cancel("c1", "o1", amount="30", day=1))


def test_first_channel_in_event_time_sticks() -> None:
    late_first = run(buy("o2", "1", day=5, channel="email"), buy("o1", "1", day=1, channel="seo"))
    early_first = run(buy("o1", "1", day=1, channel="seo"), buy("o2", "1", day=5, channel="email"))
    assert late_first.channel == early_first.channel == "seo"


def test_first_category_is_the_smallest_of_the_earliest_order_carrying_one() -> None:
    """By event time, ties by order id, in any arrival order; orders without a
    category are skipped; neither a redelivery nor a cancellation moves it, and
    the category cap does not reach it."""
    art, food = [{"sku": "a", "category": "art"}], [{"sku": "f", "category": "food"}]
    toys_books = [{"sku": "t", "category": "toys"}, {"sku": "n"}, {"sku": "b", "category": "books"}]
    events = (
        buy("o0", "1", day=0, items=[{"sku": "n"}]),  # the earliest: no category
        buy("o2", "1", day=1, items=food),  # the same moment as o1, a larger order id
        buy("o1", "1", day=1, items=toys_books),
        buy("o3", "1", day=5, items=art),
    )
    want = ("books", T0 + timedelta(days=1), "o1")
    for order in itertools.permutations(events):
        s = run(*order, cfg=replace(CFG, max_categories=1))
        assert (s.first_category, s.first_category_at, s.first_category_order) == want
        assert s.categories == {"art"}
    assert apply_purchase(s, buy("o1", "1", day=1, items=art), CFG).outcome == "duplicate"
    cancelled = apply_cancellation(s, cancel("c1", "o1", day=2, scope="order"), CFG)
    assert cancelled.state.orders == 3 and cancelled.state.first_category == "books"
    assert "first_category" not in cancelled.changed
    assert "first_category" in apply_purchase(new_state("c"), events[3], CFG).changed


def test_a_state_stored_before_first_categories_keeps_it_unknown() -> None:
    """Its categories came from orders it no longer knows: a later order's
    category would be a guess.  Without categories nothing was lost."""
    old = replace(
        run(buy("o1", "1", items=[{"sku": "b", "category": "books"}])),
        first_category=None,
        first_category_at=None,
        first_category_order=None,
    )
    later = buy("o2", "1", day=-1, items=[{"sku": "a", "category": "art"}])
    assert apply_purchase(old, later, CFG).state.first_category is None
    assert run(buy("o1", "1"), later).first_category == "art"


def test_categories_are_distinct() -> None:
    items = [{"sku": "a", "category": "books"}, {"sku": "b", "category": "toys"}]
    s = run(buy("o1", "1", items=items), buy("o2", "1", items=items[:1]))
    assert s.categories == {"books", "toys"}


def test_fx_conversion_to_base() -> None:
    s = run(buy("o1", "10.00", currency="EUR"))
    assert s.net == FX.convert(Decimal("10.00"), "EUR") and s.net > 100


def test_refund_in_another_currency_is_converted_to_the_order_currency() -> None:
    s = run(buy("o1", "1000", currency="SEK"), cancel("c1", "o1", amount="10", currency="EUR"))
    assert s.ledger[id_hash("o1")].refunded == FX.cross(Decimal(10), "EUR", "SEK")


def test_subscription_lifecycle() -> None:
    sub = {"plan_id": "pro", "interval": "month"}
    s = run(buy("o1", "300", subscription=sub), buy("o2", "300", day=30, subscription=sub))
    assert s.subscription is not None and s.subscription.amount == 300
    assert s.subscription_active and not s.subscription_churned
    ended = run(
        buy("o1", "300", subscription=sub), cancel("c1", "o1", day=40, scope="subscription")
    )
    assert ended.subscription_churned and ended.net == 300  # ending is not a refund
    resubscribed = run(
        buy("o1", "300", subscription=sub),
        cancel("c1", "o1", day=40, scope="subscription"),
        buy("o3", "300", day=50, subscription=sub),
    )
    assert resubscribed.subscription_active


def test_margin_basis_uses_event_rate_or_default() -> None:
    s = run(buy("o1", "100", margin_rate=0.2), buy("o2", "100"))
    assert s.margin == Decimal("20") + Decimal("50")


def test_repeat_day_spend_excludes_the_first_day() -> None:
    s = run(
        buy("o1", "100"), buy("o2", "30", day=0.1), buy("o3", "50", day=2), buy("o4", "20", day=9)
    )
    summary = s.btyd(T0 + timedelta(days=20))
    assert summary is not None
    assert (summary.x, summary.t_x, summary.T, summary.repeat_net) == (2, 9, 20, 70)


def test_events_of_any_age_apply_and_deduplicate_exactly() -> None:
    """Three years of orders: the oldest order arriving last, a refund of it and a
    redelivery of it years later all count exactly, with no window."""
    days = [i * 37 for i in range(30)]
    s = run(*(buy(f"o{i}", "10", day=d) for i, d in enumerate(days) if i))
    t = apply_purchase(s, buy("o0", "10", day=0), CFG)
    assert t.outcome == "applied" and t.state.first_order_at == T0
    s = t.state
    assert (s.orders, s.net, s.purchase_days, s.version) == (30, 300, 30, 30)
    assert apply_purchase(s, buy("o0", "10", day=0), CFG).outcome == "duplicate"
    s = apply_cancellation(s, cancel("c0", "o0", day=1000), CFG).state
    assert (s.orders, s.net, s.purchase_days) == (29, 290, 29)
    assert s.first_order_at == T0 + timedelta(days=37)
    summary = s.btyd(T0 + timedelta(days=1200))
    assert summary is not None and (summary.x, summary.t_x, summary.repeat_net) == (28, 1036, 280)


def test_cancelling_the_only_order_of_the_first_day_moves_the_first_day() -> None:
    s = run(buy("o1", "100"), buy("o2", "40", day=3), buy("o3", "5", day=3.2))
    s = apply_cancellation(s, cancel("c1", "o1", day=10), CFG).state
    summary = s.btyd(T0 + timedelta(days=10))
    assert summary is not None
    assert (summary.x, summary.t_x, summary.T, summary.repeat_net) == (0, 0, 7, 0)
    assert s.first_day_value() == (45, Decimal("22.5"))


def test_past_the_per_customer_cap_new_events_are_refused_never_silently() -> None:
    cfg = StateConfig(fx=FX, max_events=5)
    s = run(*(buy(f"o{i}", "1", day=i) for i in range(4)), cancel("c0", "o0"), cfg=cfg)
    assert s.remembered == 5 and (s.orders, s.net) == (3, 3)
    assert apply_purchase(s, buy("o9", "1"), cfg).outcome == "limit"
    assert apply_cancellation(s, cancel("c9", "o1"), cfg).outcome == "limit"
    # What is remembered is still recognised.
    assert apply_purchase(s, buy("o1", "1"), cfg).outcome == "duplicate"
    assert apply_cancellation(s, cancel("c0", "o0"), cfg).outcome == "duplicate"


def test_set_risk_bumps_version_only_when_time_driven() -> None:
    s = run(buy("o1", "1"))
    assert set_risk(s, "low", time_driven=False).version == s.version
    moved = set_risk(set_risk(s, "low", time_driven=False), "high", time_driven=True)
    assert (moved.risk, moved.version) == ("high", s.version + 1)
    assert set_risk(moved, "high", time_driven=True) is moved


def test_wrong_customer_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        apply_purchase(new_state("other"), buy("o1", "1"), CFG)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        StateConfig(fx=FX, pending_window=timedelta(days=-1))
    with pytest.raises(ValueError):
        StateConfig(fx=FX, max_events=0)
    with pytest.raises(ValueError):
        StateConfig(fx=FX, default_margin=Decimal(2))
