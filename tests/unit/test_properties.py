"""Property tests of the domain core: order independence, idempotency, exactness."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from domain_histories import (
    CFG,
    CUSTOMER,
    FX,
    T0,
    Event,
    apply,
    histories,
    observed,
    oracle,
    purchases,
    replay,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from state.codec import decode_state, encode_state
from state.customer import StateConfig, new_state
from state.events import Cancellation, Purchase, Scope

MANY = settings(max_examples=2000, deadline=None)


@MANY
@given(st.data())
def test_any_permutation_gives_the_identical_state(data: st.DataObject) -> None:
    events = data.draw(histories())
    shuffled = data.draw(st.permutations(events))
    in_order, reordered = replay(events), replay(shuffled)
    assert reordered == in_order
    assert encode_state(reordered) == encode_state(in_order)


@MANY
@given(st.data())
def test_replaying_a_prefix_again_changes_nothing(data: st.DataObject) -> None:
    events = data.draw(histories())
    state = replay(events)
    for event in events[: data.draw(st.integers(0, len(events)))]:
        transition = apply(state, event)
        assert transition.outcome == "duplicate"
        assert transition.state is state
        assert transition.applied == ()


@MANY
@given(st.data())
def test_totals_equal_the_oracle_and_net_is_never_negative(data: st.DataObject) -> None:
    events = data.draw(st.permutations(data.draw(histories())))
    state = new_state(CUSTOMER)
    for event in events:
        state = apply(state, event).state
        assert state.net >= 0
        assert all(e.net >= 0 and e.refunded <= e.amount for e in state.ledger.values())
        assert all(d.orders > 0 and d.net >= 0 for d in state.days.values())
    assert observed(state) == oracle(events)
    assert decode_state(encode_state(state)) == state


@st.composite
def long_histories(draw: st.DrawFn) -> list[Event]:
    """Orders over 200 days, each cancellation within a day of its order."""
    events: list[Event] = []
    for i in range(draw(st.integers(1, 25))):
        p = draw(purchases(i, max_minutes=200 * 24 * 60))
        events.append(p)
        if draw(st.booleans()):
            events.append(
                Cancellation.model_construct(
                    event_id=f"c-{i}",
                    order_id=p.order_id,
                    customer_id=CUSTOMER,
                    occurred_at=p.occurred_at + timedelta(minutes=draw(st.integers(0, 1440))),
                    amount=draw(st.none() | st.decimals(min_value=0, max_value=500, places=2)),
                    currency=None,
                    scope=draw(st.sampled_from(Scope)),
                    reason=None,
                )
            )
    return events


@MANY
@given(long_histories())
def test_compaction_keeps_totals_exact_and_state_bounded(events: list[Event]) -> None:
    """In event-time order with a 3-day ledger, old orders are compacted, yet every
    figure still equals the oracle's and the BTYD statistics stay right."""
    cfg = StateConfig(
        fx=FX,
        default_margin=CFG.default_margin,
        pending_window=timedelta(days=2),
        ledger_window=timedelta(days=3),
    )
    state = new_state(CUSTOMER)
    for event in sorted(events, key=lambda e: (e.occurred_at, isinstance(e, Cancellation))):
        transition = apply(state, event, cfg)
        assert transition.outcome == "applied"
        state = transition.state
        assert state.watermark is not None
        assert all(e.occurred_at >= state.watermark - timedelta(days=3) for e in state.ledger.values())
    assert observed(state) == oracle(events)
    assert decode_state(encode_state(state)) == state

    live = [p for p in events if isinstance(p, Purchase) and p.order_id in _live_orders(events)]
    summary = state.btyd(T0 + timedelta(days=300))
    if not live:
        assert summary is None
        return
    assert summary is not None
    days = sorted({p.occurred_at.date() for p in live})
    assert (summary.x, summary.t_x) == (len(days) - 1, (days[-1] - days[0]).days)
    assert summary.T == (T0.date() + timedelta(days=300) - days[0]).days
    assert summary.repeat_net == oracle(events).net - oracle(events).first_day_net


def _live_orders(events: list[Event]) -> set[str]:
    """Order ids not fully cancelled, by the oracle's own rule (recomputed per order)."""
    out = set()
    for p in events:
        if isinstance(p, Purchase):
            cancels = [e for e in events if isinstance(e, Cancellation) and e.order_id == p.order_id]
            if oracle([p, *cancels]).orders == 1:
                out.add(p.order_id)
    return out


@MANY
@given(st.data())
def test_version_counts_each_incorporated_event_once(data: st.DataObject) -> None:
    events = data.draw(histories())
    state = new_state(CUSTOMER)
    updates = 0
    for event in data.draw(st.permutations(events)):
        transition = apply(state, event)
        assert transition.state.version == state.version + len(transition.applied)
        assert (transition.outcome == "applied") == bool(transition.applied)
        updates += len(transition.applied)
        state = transition.state
    assert state.version == updates == oracle(events).version
    assert state.net == oracle(events).net
    assert state.gross >= state.net >= Decimal(0)
