"""Property tests of the domain core: order independence, idempotency, exactness."""

from __future__ import annotations

from datetime import timedelta

from domain_histories import (
    CFG,
    CUSTOMER,
    FX,
    T0,
    Event,
    apply,
    histories,
    make_cancellation,
    make_purchase,
    money,
    observed,
    oracle,
    purchase_fields,
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
def test_totals_and_version_equal_the_oracle_and_net_is_never_negative(data: st.DataObject) -> None:
    events = data.draw(st.permutations(data.draw(histories())))
    state = new_state(CUSTOMER)
    updates = 0
    for event in events:
        transition = apply(state, event)
        # One update per incorporated event, and the version moves with them.
        assert transition.state.version == state.version + len(transition.applied)
        assert (transition.outcome == "applied") == bool(transition.applied)
        updates += len(transition.applied)
        state = transition.state
        assert state.gross >= state.net >= 0
        assert all(e.net >= 0 and e.refunded <= e.amount for e in state.ledger.values())
        assert all(d.orders > 0 and d.net >= 0 for d in state.days.values())
    assert observed(state) == oracle(events)
    assert decode_state(encode_state(state)) == state


_long_parts = st.lists(
    st.tuples(
        purchase_fields(200 * 24 * 60),
        st.none()
        | st.tuples(st.integers(0, 1440), st.none() | money, st.none(), st.sampled_from(Scope)),
    ),
    min_size=1,
    max_size=15,
)


@st.composite
def long_histories(draw: st.DrawFn) -> list[Event]:
    """Orders over 200 days, each cancellation within a day of its order."""
    events: list[Event] = []
    for i, (fields, cancel) in enumerate(draw(_long_parts)):
        p = make_purchase(i, fields)
        events.append(p)
        if cancel is not None:
            events.append(make_cancellation(i, p.order_id, cancel, start=p.occurred_at))
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
        assert all(
            e.occurred_at >= state.watermark - timedelta(days=3) for e in state.ledger.values()
        )
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
    assert (T0.date() + timedelta(days=300) - days[0]).days == summary.T
    assert summary.repeat_net == oracle(events).net - oracle(events).first_day_net


def _live_orders(events: list[Event]) -> set[str]:
    """Order ids not fully cancelled, by the oracle's own rule (recomputed per order)."""
    out = set()
    for p in events:
        if isinstance(p, Purchase):
            cancels = [
                e for e in events if isinstance(e, Cancellation) and e.order_id == p.order_id
            ]
            if oracle([p, *cancels]).orders == 1:
                out.add(p.order_id)
    return out
