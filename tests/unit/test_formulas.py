"""LTV formulas, risk levels and RFM segments, including the seed examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltv.formulas import (
    ValueBasis,
    average_order_value,
    customer_formula_ltv,
    expected_next_order_at,
    formula_ltv,
    historic_ltv,
    ltv_cac,
    mean_purchase_gap_days,
    subscription_ltv,
)
from ltv.rfm import RfmEdges, Segment, quintile_edges, quintile_score, rfm_score, segment_of
from ltv.risk import RiskLevel, RiskThresholds, heuristic_risk, risk_from_p_alive


def test_seed_500_kr_a_month_for_12_months_is_6000_kr() -> None:
    assert formula_ltv(Decimal(500), Decimal(1), Decimal(12)) == Decimal(6000)


def test_seed_300_kr_a_month_at_10_percent_churn_is_3000_kr_and_ltv_cac_4_3() -> None:
    ltv = subscription_ltv(Decimal(300), Decimal(1), Decimal("0.10"))
    assert ltv == Decimal(3000)
    ratio = ltv_cac(ltv, Decimal(700))
    assert ratio is not None and round(ratio, 1) == Decimal("4.3")


def test_subscription_ltv_applies_margin_and_refuses_zero_churn() -> None:
    assert subscription_ltv(Decimal(300), Decimal("0.4"), Decimal("0.10")) == Decimal(1200)
    assert subscription_ltv(Decimal(300), Decimal(1), Decimal(0)) is None


def test_ltv_cac_is_none_without_a_cac() -> None:
    assert ltv_cac(Decimal(100), None) is None
    assert ltv_cac(Decimal(100), Decimal(0)) is None


def test_historic_ltv_by_basis() -> None:
    assert historic_ltv(Decimal(100), Decimal(40), ValueBasis.REVENUE) == 100
    assert historic_ltv(Decimal(100), Decimal(40), ValueBasis.MARGIN) == 40


def test_average_order_value() -> None:
    assert average_order_value(Decimal(100), 4) == 25
    assert average_order_value(Decimal(0), 0) is None


def test_customer_formula_floors_short_tenure() -> None:
    # Two 50 kr orders on day one: 2 orders per 30 days, over a 360-day lifespan.
    assert customer_formula_ltv(Decimal(50), 2, 0, 360) == Decimal(1200)
    assert customer_formula_ltv(Decimal(50), 2, 60, 360) == Decimal(600)


def test_expected_next_order_from_mean_gap() -> None:
    last = datetime(2026, 1, 31, tzinfo=UTC)
    gap = mean_purchase_gap_days(3, 0, 30)
    assert gap == 15
    assert expected_next_order_at(last, gap) == last + timedelta(days=15)
    assert mean_purchase_gap_days(1, 5, 5) is None
    assert expected_next_order_at(last, None) is None


@pytest.mark.parametrize(
    ("p", "level"), [(0.9, "low"), (0.7, "low"), (0.5, "medium"), (0.3, "medium"), (0.1, "high")]
)
def test_risk_from_p_alive_default_thresholds(p: float, level: str) -> None:
    assert risk_from_p_alive(p, RiskThresholds()) == level


def test_ended_subscription_is_churned_whatever_the_numbers() -> None:
    assert risk_from_p_alive(0.99, RiskThresholds(), subscription_ended=True) is RiskLevel.CHURNED
    assert heuristic_risk(0, 10, subscription_ended=True) is RiskLevel.CHURNED


def test_thresholds_are_validated() -> None:
    with pytest.raises(ValueError):
        RiskThresholds(low_risk=0.3, medium_risk=0.7)


@pytest.mark.parametrize(
    ("days", "gap", "level"),
    [
        (10, 10.0, "low"),
        (14, 10.0, "low"),
        (15, 10.0, "medium"),
        (29, 10.0, "medium"),
        (30, 10.0, "high"),
        (100, None, "low"),
        (200, None, "medium"),
        (300, None, "high"),
    ],
)
def test_heuristic_risk_counts_gaps(days: int, gap: float | None, level: str) -> None:
    assert heuristic_risk(days, gap, population_gap_days=90) == level


def test_rfm_grid_names_every_cell_and_uses_every_segment() -> None:
    cells = {(r, f): segment_of(r, f) for r in range(1, 6) for f in range(1, 6)}
    assert set(cells.values()) == set(Segment)
    assert cells[5, 5] is Segment.CHAMPIONS
    assert cells[5, 1] is Segment.NEW
    assert cells[1, 5] is Segment.CANT_LOSE
    assert cells[1, 1] is Segment.HIBERNATING
    assert cells[3, 3] is Segment.NEED_ATTENTION
    with pytest.raises(ValueError):
        segment_of(0, 3)


def test_rfm_scores_reward_recent_frequent_big_spenders() -> None:
    edges = RfmEdges(
        recency=(10, 30, 60, 120), frequency=(1, 2, 4, 8), monetary=(50, 100, 200, 400)
    )
    best = rfm_score(5, 20, 1000, edges)
    worst = rfm_score(365, 1, 10, edges)
    assert (best.recency, best.frequency, best.monetary) == (5, 5, 5)
    assert (worst.recency, worst.frequency, worst.monetary) == (1, 1, 1)
    assert best.segment is Segment.CHAMPIONS and worst.segment is Segment.HIBERNATING


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=200), st.floats(0, 1e6))
def test_quintile_scores_are_monotone_and_in_range(values: list[float], x: float) -> None:
    edges = quintile_edges(values)
    assert list(edges) == sorted(edges)
    scores = [quintile_score(v, edges) for v in sorted(values)]
    assert scores == sorted(scores) and all(1 <= s <= 5 for s in scores)
    assert 1 <= quintile_score(x, edges) <= 5


def test_quintiles_split_a_uniform_population_evenly() -> None:
    values = [float(v) for v in range(100)]
    edges = quintile_edges(values)
    counts = [sum(1 for v in values if quintile_score(v, edges) == s) for s in range(1, 6)]
    assert counts == [21, 20, 20, 20, 19]
    with pytest.raises(ValueError):
        quintile_edges([])


def test_segment_counts_agree_with_scoring_one_by_one() -> None:
    from ltv.rfm import RfmEdges, rfm_score, segment_counts

    edges = RfmEdges(recency=(10, 30, 60, 120), frequency=(0, 1, 2, 5), monetary=(1, 2, 3, 4))
    recency = [0, 5, 10, 31, 61, 200, 45, 121, 30, 7]
    frequency = [0, 3, 9, 1, 2, 0, 6, 1, 5, 2]
    expected: dict[str, int] = {}
    for r, f in zip(recency, frequency, strict=True):
        name = rfm_score(r, f, 0, edges).segment.value
        expected[name] = expected.get(name, 0) + 1
    counts = segment_counts(recency, frequency, edges)
    assert {k: v for k, v in counts.items() if v} == expected
    assert sum(counts.values()) == len(recency)
