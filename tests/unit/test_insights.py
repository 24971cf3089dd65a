"""Live group aggregates (docs/insights.md): exact, order-independent, mergeable.

The oracle (``oracle``) recomputes every figure straight from a list of final
customer states, by dates and Decimal sums, without contributions, keys or
month indices; it shares with the code under test only the result types and
the documented constants (ages, windows, target). The incremental path
applies events one by one, each write removing the customer's stored
contribution and adding the new one, as the worker does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from domain_histories import (
    SPAN_DAYS,
    T0,
    Event,
    apply,
    histories,
    make_cancellation,
    make_purchase,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from insights_oracle import Customer, assert_same, cents

from ltv.formulas import ValueBasis
from ltv.insights import (
    LTV_CAC_TARGET,
    NPS_CLASSES,
    UNITS,
    InsightsConfig,
    insights,
    nps_class,
)
from ltv.risk import RiskLevel
from ltv.valuation import Valuation
from state.customer import CustomerState, new_state
from state.events import Purchase, Scope
from state.fx import MONEY_QUANTUM
from state.insights import Aggregate, Contribution, InsightsError, Valued

SOME = settings(max_examples=30, deadline=None)
CFG = InsightsConfig(
    basis=ValueBasis.REVENUE, cac={"seo": Decimal(15), "paid": Decimal("40.5"), "email": Decimal(0)}
)
MARGIN_CFG = replace(CFG, basis=ValueBasis.MARGIN, subscription_margin=Decimal("0.5"))
SEGMENTS = ("champions", "loyal", "at_risk")
CENT = Decimal("0.01")


def valuation_of(s: CustomerState) -> Valuation | None:
    """A stand-in for the processor's valuation: any pure function of the state
    will do, since contributions only read predicted LTV, segment and risk."""
    if s.version % 5 == 0:
        return None
    predicted = Decimal(repr(float(s.net) * 0.37 + s.orders / 3))
    risk = RiskLevel.CHURNED if s.subscription_churned else list(RiskLevel)[s.version % 3]
    return Valuation(
        historic_ltv=s.net,
        aov=None,
        formula_ltv=None,
        predicted_ltv=None if s.version % 7 == 0 else predicted,
        total_ltv=s.net + predicted,
        expected_orders=None,
        p_alive=None,
        churn_risk=None if s.orders == 0 else risk,
        expected_next_order_at=None,
        segment=None if s.version % 4 == 0 else SEGMENTS[s.version % 3],
        ltv_cac=None,
        days_since_last_order=None,
    )


# ------------------------------------------------------------------ strategies


@st.composite
def shops(draw: st.DrawFn) -> tuple[list[list[Event]], list[str]]:
    """A few customers' histories (each replayed as its own customer) and NPS classes."""
    n = draw(st.integers(1, 5))
    events = [draw(histories(max_orders=40)) for _ in range(n)]
    return events, [draw(st.sampled_from(NPS_CLASSES)) for _ in range(n)]


clocks = st.integers(1, 900).map(lambda d: T0 + timedelta(days=SPAN_DAYS + d, seconds=d * 7))


def interleave(events: list[list[Event]]) -> list[tuple[int, Event]]:
    return [(i, e) for i, es in enumerate(events) for e in es]


def run(
    writes: Sequence[tuple[int, Event]], nps: list[str], cfg: InsightsConfig
) -> tuple[Aggregate, list[Customer]]:
    """Apply events one by one; every write replaces the customer's contribution."""
    states = [new_state("c-1") for _ in nps]
    stored = [Contribution() for _ in nps]
    valued: list[Valued | None] = [None for _ in nps]
    agg = Aggregate()
    for i, event in writes:
        t = apply(states[i], event)
        if t.outcome not in ("applied", "held"):
            continue
        # The small stored valuation part recomputes what the old state added.
        assert Contribution.of(states[i], valued[i], cfg, nps[i]) == stored[i]
        v = valuation_of(t.state)
        valued[i] = None if v is None else Valued.decode(Valued.of(v).encode())
        new = Contribution.of(t.state, v, cfg, nps[i])
        # Half the writes add before they remove: the order must not matter.
        if len(agg) % 2:
            agg.add(new)
            agg.remove(stored[i])
        else:
            agg.remove(stored[i])
            agg.add(new)
        states[i], stored[i] = t.state, new
    return agg, [Customer(s, valuation_of(s), c) for s, c in zip(states, nps, strict=True)]


def final_aggregate(customers: Sequence[Customer], cfg: InsightsConfig) -> Aggregate:
    return Aggregate.of(Contribution.of(c.state, c.valuation, cfg, c.nps) for c in customers)


# ------------------------------------------------------------------ tests


@SOME
@given(st.data())
def test_incremental_writes_equal_the_oracle_on_the_final_states(data: st.DataObject) -> None:
    events, nps = data.draw(shops())
    cfg = data.draw(st.sampled_from((CFG, MARGIN_CFG)))
    writes = data.draw(st.permutations(interleave(events)))
    agg, customers = run(writes, nps, cfg)
    assert agg == final_aggregate(customers, cfg)
    clock = data.draw(clocks)
    assert_same(insights(agg, clock, cfg), customers, clock, cfg)


@SOME
@given(st.data())
def test_any_order_of_the_writes_gives_the_same_sums(data: st.DataObject) -> None:
    events, nps = data.draw(shops())
    writes = interleave(events)
    first, _ = run(data.draw(st.permutations(writes)), nps, CFG)
    second, _ = run(data.draw(st.permutations(writes)), nps, CFG)
    assert first == second and len(first) == len(second)


@SOME
@given(st.data())
def test_merged_partitions_equal_the_aggregate_of_the_union(data: st.DataObject) -> None:
    events, nps = data.draw(shops())
    agg, customers = run(interleave(events), nps, CFG)
    parts = data.draw(st.lists(st.integers(0, 3), min_size=len(customers), max_size=len(customers)))
    partitions = [
        final_aggregate([c for c, p in zip(customers, parts, strict=True) if p == k], CFG)
        for k in range(4)
    ]
    merged = Aggregate()
    for k in data.draw(st.permutations(range(4))):
        merged.merge(partitions[k])
    assert merged == agg


@SOME
@given(st.data())
def test_encode_decode_round_trips(data: st.DataObject) -> None:
    events, nps = data.draw(shops())
    _, customers = run(interleave(events), nps, CFG)
    for c in customers:
        contribution = Contribution.of(c.state, c.valuation, CFG, c.nps)
        assert Contribution.decode(contribution.encode()) == contribution


@SOME
@given(shops())
def test_removing_every_contribution_leaves_the_empty_aggregate(
    shop: tuple[list[list[Event]], list[str]],
) -> None:
    events, nps = shop
    agg, customers = run(interleave(events), nps, CFG)
    for c in customers:
        agg.remove(Contribution.of(c.state, c.valuation, CFG, c.nps))
    assert agg == Aggregate() and len(agg) == 0


def test_money_units_are_the_state_quantum() -> None:
    assert Decimal(1) / UNITS == MONEY_QUANTUM
    assert LTV_CAC_TARGET == 3


@pytest.mark.parametrize(
    ("score", "cls"),
    [
        (None, "unknown"),
        (0, "detractor"),
        (6, "detractor"),
        (7, "passive"),
        (8, "passive"),
        (9, "promoter"),
        (10, "promoter"),
    ],
)
def test_nps_classes(score: int | None, cls: str) -> None:
    assert nps_class(score) == cls


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        nps_class(11)
    with pytest.raises(ValueError):
        Contribution.of(new_state("c"), None, CFG, "fan")
    for bad in (
        b"[",
        b"[]",
        b'{"a": 1.5}',
        b'{"a": 0}',
        b'{"a": true}',
    ):
        with pytest.raises(InsightsError):
            Contribution.decode(bad)


def _customer(*events: Event, nps: str = "unknown") -> Customer:
    state = new_state("c-1")
    for event in events:
        state = apply(state, event).state
    return Customer(state, None, nps)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_the_boundaries_of_the_definitions() -> None:
    """Each comparison of docs/insights.md on its boundary: an order exactly 30
    days after the first is not within 30 days, a cohort that starts the NRR
    window is not in its base, a subscription ending in the clock's month still
    counts at the end of the window, LTV equal to 3 x CAC is not above it."""
    T = _at("2026-01-01T00:00:00")

    def buy(
        i: int, at: str, amount: str, channel: str | None = None, plan: str | None = None
    ) -> Purchase:
        minute = int((_at(at) - T) / timedelta(minutes=1))
        return make_purchase(i, (minute, Decimal(amount), "SEK", None, channel, [], plan), T)

    ends = _at("2027-03-01T00:00:00")
    end_minute = int((ends - T) / timedelta(minutes=1))
    customers = [
        _customer(
            buy(0, "2026-02-28T23:59:00", "100", "paid"),
            buy(1, "2026-03-30T23:59:00", "50"),
            nps="promoter",
        ),
        _customer(
            buy(0, "2026-03-01T00:00:00", "200"),
            buy(1, "2027-02-10T00:00:00", "10"),
            nps="detractor",
        ),
        _customer(buy(0, "2026-06-01T00:00:00", "45", "seo")),
        _customer(
            buy(0, "2026-02-10T00:00:00", "300", plan="pro"),
            buy(1, "2026-03-10T00:00:00", "300", plan="pro"),
            make_cancellation(0, "o-1", (end_minute, None, None, Scope.SUBSCRIPTION), T),
        ),
        _customer(buy(0, "2027-01-01T00:00:00", "100", plan="basic")),
    ]
    clock = _at("2027-03-10T12:00:00")
    agg = final_aggregate(customers, CFG)
    got = insights(agg, clock, CFG)
    assert_same(got, customers, clock, CFG)
    cohort = next(c for c in got.cohorts if c.cohort == "2026-02")
    assert cohort.customers == 2
    assert cohort.net_per_customer[30] == Decimal("350.00")  # (100 + 600) / 2
    assert cohort.retention[:2] == (1.0, 1.0)
    assert (got.nrr.window_start, got.nrr.window_end) == ("2026-03", "2027-02")
    assert (got.nrr.revenue_prior, got.nrr.revenue_current) == (
        Decimal("400.00"),
        Decimal("350.00"),
    )
    assert got.nrr.revenue_nrr == 0.875
    assert (got.nrr.mrr_start, got.nrr.mrr_end, got.nrr.mrr_nrr) == (
        Decimal("300.00"),
        Decimal("300.00"),
        1.0,
    )
    seo = next(c for c in got.channels if c.channel == "seo")
    assert (seo.mean_total_ltv, seo.ltv_cac, seo.share_above_target) == (Decimal("45.00"), 3.0, 0.0)
    assert (got.churn.subscribers_ended, got.churn.subscribers_active) == (1, 1)
    month = timedelta(days=365.25 / 12)
    months = (ends - _at("2026-02-10T00:00:00")) / month + (clock - _at("2027-01-01")) / month
    churn = round(1 / months, 6)
    assert got.churn.subscription_monthly_churn == churn
    what_if = got.churn.what_if
    assert what_if is not None and what_if.ltv_after is not None
    assert (what_if.arpu, what_if.churn_after) == (Decimal("100.00"), round(churn - 0.05, 6))
    assert what_if.ltv == cents(Decimal(100) / Decimal(repr(churn)))
    assert what_if.uplift_pct == round((churn / (churn - 0.05) - 1) * 100, 2)
    assert got.promoter_detractor_ratio == round(150 / 210, 4)
    assert got.to_json().startswith(b'{"as_of":"2027-03-10T12:00:00Z","currency":"USD"')
