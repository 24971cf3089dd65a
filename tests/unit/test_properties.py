"""Property tests of the domain core over multi-year histories: order independence,
idempotency at any distance, exact figures and BTYD statistics, held cancellations,
the latest NPS answer.

Every history spans up to three years with up to 500 orders (``histories``); the
oracle (``domain_histories.oracle``) recomputes the figures from the event list
alone.  No time window exists that a history could stay inside of.
"""

from __future__ import annotations

from datetime import timedelta

from domain_histories import (
    CFG,
    CUSTOMER,
    SPAN_DAYS,
    T0,
    apply,
    histories,
    observed,
    oracle,
    replay,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from state.codec import decode_state, encode_state
from state.customer import new_state, notify_unmatched
from state.events import Cancellation

MANY = settings(max_examples=2000, deadline=None)


@MANY
@given(st.data())
def test_any_permutation_gives_the_identical_state(data: st.DataObject) -> None:
    """Purchases, cancellations and NPS answers with redeliveries, in any order:
    the same state, so the same bytes, first channel and category (orders often
    share a moment: ties by order id), latest score and version."""
    events = data.draw(histories())
    shuffled = data.draw(st.permutations(events))
    in_order, reordered = replay(events), replay(shuffled)
    assert reordered == in_order
    assert encode_state(reordered) == encode_state(in_order)


@MANY
@given(st.data())
def test_replaying_any_earlier_events_again_changes_nothing(data: st.DataObject) -> None:
    events = data.draw(st.permutations(data.draw(histories())))
    state = replay(events)
    again = data.draw(st.lists(st.sampled_from(events), max_size=50)) if events else []
    for event in again:
        transition = apply(state, event)
        assert transition.outcome == "duplicate"
        assert transition.state is state
        assert transition.applied == ()


@MANY
@given(st.data())
def test_totals_and_version_equal_the_oracle_and_net_is_never_negative(data: st.DataObject) -> None:
    events = data.draw(st.permutations(data.draw(histories())))
    state = new_state(CUSTOMER)
    for event in events:
        transition = apply(state, event)
        # One update per incorporated event, and the version moves with them.
        assert transition.state.version == state.version + len(transition.applied)
        assert (transition.outcome == "applied") == bool(transition.applied)
        state = transition.state
        assert state.gross >= state.net >= 0
    assert all(e.net >= 0 and e.refunded <= e.amount for e in state.ledger.values())
    assert all(d.orders > 0 and d.net >= 0 for d in state.days.values())
    assert observed(state) == oracle(events)
    assert decode_state(encode_state(state)) == state


@MANY
@given(st.data())
def test_btyd_statistics_equal_the_oracle_in_any_order(data: st.DataObject) -> None:
    """Distinct purchase days, first and last day, repeat-day spend: also when a
    late order becomes the first one or the first day's only order is cancelled."""
    events = data.draw(st.permutations(data.draw(histories())))
    clock = T0 + timedelta(days=SPAN_DAYS + 30)
    summary = replay(events).btyd(clock)
    want = oracle(events)
    if want.first_order_at is None or want.last_order_at is None:
        assert summary is None
        return
    assert summary is not None
    first, last = want.first_order_at.date(), want.last_order_at.date()
    assert summary.x == want.purchase_days - 1
    assert summary.t_x == (last - first).days
    assert (clock.date() - first).days == summary.T
    assert summary.repeat_net == want.net - want.first_day_net


@MANY
@given(st.data())
def test_notices_never_change_the_figures_and_report_each_unmatched_event_once(
    data: st.DataObject,
) -> None:
    """Purchases progress moving anywhere, at any point of any arrival order, only
    marks held cancellations as reported: the figures equal the oracle's, a later
    purchase still gets its refund, and no cancellation is reported twice."""
    events = data.draw(st.permutations(data.draw(histories(max_orders=60))))
    progress = st.none() | st.integers(-30, SPAN_DAYS + 60).map(lambda d: T0 + timedelta(days=d))
    state = new_state(CUSTOMER)
    reported: list[str] = []
    for event in events:
        state = apply(state, event).state
        notice = notify_unmatched(state, data.draw(progress), CFG)
        reported += [h.event_id for _, h in notice.notices]
        state = notice.state
    assert observed(state) == oracle(events)
    assert len(reported) == len(set(reported))
    held = {h.event_id for hs in state.pending.values() for h in hs}
    assert set(reported) <= {e.event_id for e in events if isinstance(e, Cancellation)}
    assert held == oracle(events).held
    assert {h.event_id for hs in state.pending.values() for h in hs if h.notified} == set(
        reported
    ) & held
