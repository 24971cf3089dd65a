"""Focused examples of the CustomerState transitions."""

# Money figures are Decimal and compared with int literals on purpose (exact equality).
# mypy: disable-error-code="comparison-overlap"

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from state.customer import (
    CustomerState,
    StateConfig,
    apply_cancellation,
    apply_purchase,
    expire_pending,
    new_state,
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


def test_unmatched_cancellation_expires_after_the_window() -> None:
    s = run(cancel("c1", "ghost", day=0))
    t = apply_purchase(s, buy("o2", "10", day=29), CFG)
    assert t.expired == () and "ghost" in t.state.pending
    t = apply_purchase(t.state, buy("o3", "10", day=31), CFG)
    assert [(oid, h.event_id) for oid, h in t.expired] == [("ghost", "c1")]
    assert t.state.pending == {}
    # A redelivery of the expired cancellation is a duplicate, not a second dead letter.
    assert apply_cancellation(t.state, cancel("c1", "ghost", day=0), CFG).outcome == "duplicate"
    assert b'"order_id":"ghost"' in t.expired[0][1].event_json("c", "ghost")


def test_expire_pending_uses_an_external_clock() -> None:
    s = run(cancel("c1", "ghost", day=0))
    assert expire_pending(s, T0 + timedelta(days=29), CFG).outcome == "unchanged"
    t = expire_pending(s, T0 + timedelta(days=31), CFG)
    assert t.outcome == "expired" and len(t.expired) == 1 and t.state.pending == {}
    assert "ghost" in s.pending  # input untouched


def test_first_channel_in_event_time_sticks() -> None:
    late_first = run(buy("o2", "1", day=5, channel="email"), buy("o1", "1", day=1, channel="seo"))
    early_first = run(buy("o1", "1", day=1, channel="seo"), buy("o2", "1", day=5, channel="email"))
    assert late_first.channel == early_first.channel == "seo"


def test_categories_are_distinct() -> None:
    items = [{"sku": "a", "category": "books"}, {"sku": "b", "category": "toys"}]
    s = run(buy("o1", "1", items=items), buy("o2", "1", items=items[:1]))
    assert s.categories == {"books", "toys"}


def test_fx_conversion_to_base() -> None:
    s = run(buy("o1", "10.00", currency="EUR"))
    assert s.net == FX.convert(Decimal("10.00"), "EUR") and s.net > 100


def test_refund_in_another_currency_is_converted_to_the_order_currency() -> None:
    s = run(buy("o1", "1000", currency="SEK"), cancel("c1", "o1", amount="10", currency="EUR"))
    assert s.ledger["o1"].refunded == FX.cross(Decimal(10), "EUR", "SEK")


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


def test_old_orders_are_compacted_and_late_events_rejected() -> None:
    cfg = StateConfig(fx=FX, pending_window=timedelta(days=5), ledger_window=timedelta(days=10))
    s = run(*(buy(f"o{i}", "10", day=i) for i in range(30)), cfg=cfg)
    assert (s.orders, s.net, s.purchase_days, s.version) == (30, 300, 30, 30)
    assert len(s.ledger) == 11 and s.past_days == 19
    assert s.first_order_at == T0
    assert apply_purchase(s, buy("o0", "10", day=0), cfg).outcome == "late"
    assert apply_cancellation(s, cancel("c", "o0", day=1), cfg).outcome == "late"
    summary = s.btyd(T0 + timedelta(days=40))
    assert summary is not None and (summary.x, summary.t_x, summary.repeat_net) == (29, 29, 290)


def test_ledger_cap_bounds_state_of_heavy_customers() -> None:
    cfg = StateConfig(fx=FX, max_ledger_orders=100)
    s = run(*(buy(f"o{i}", "1", day=i / 100) for i in range(500)), cfg=cfg)
    assert s.orders == 500 and s.net == 500
    assert len(s.ledger) <= 100 and len(s.days) <= 2


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
        StateConfig(fx=FX, pending_window=timedelta(days=60), ledger_window=timedelta(days=30))
    with pytest.raises(ValueError):
        StateConfig(fx=FX, default_margin=Decimal(2))
