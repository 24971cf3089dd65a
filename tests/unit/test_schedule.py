"""ltv.schedule: the next churn-risk change of a silent customer, checked against value()."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from ltv.gammagamma import GammaGammaParams
from ltv.mbgnbd import MBGNBDParams
from ltv.risk import RiskLevel
from ltv.schedule import BOUNDARY_SPAN, MAX_DAYS, RiskOutlook, figures_at, risk_outlook
from ltv.valuation import CustomerFigures, ModelSnapshot, ValuationConfig, value

CFG = ValuationConfig()
START = datetime(2024, 1, 1, 9, 30, tzinfo=UTC)
# CDNOW's MBG/NBD-like parameters with alpha in days.
MODEL = ModelSnapshot(
    version="v1",
    orders=MBGNBDParams(r=0.5, alpha=30.0, a=0.6, b=2.5),
    spend=GammaGammaParams(p=6.25, q=3.74, gamma=15.44),
)


def customer(days: int, gap_days: int, clock: datetime, *, ended: bool = False) -> CustomerFigures:
    """``days`` purchase days ``gap_days`` apart from START, valued at ``clock``."""
    last = START + timedelta(days=(days - 1) * gap_days)
    figures = CustomerFigures(
        orders=days,
        net_revenue=Decimal(100 * days),
        net_margin=Decimal(100 * days),
        first_order_at=START,
        last_order_at=last,
        x=days - 1,
        t_x=(days - 1) * gap_days,
        T=0,
        repeat_value=Decimal(100 * (days - 1)),
        channel=None,
        subscription_amount=Decimal(10) if ended else None,
        subscription_ended=ended,
    )
    return figures_at(figures, clock)


def level(c: CustomerFigures, model: ModelSnapshot | None, at: datetime) -> RiskLevel | None:
    return value(figures_at(c, at), model, CFG, at).churn_risk


def test_heuristic_regular_buyer_turns_medium_at_1_5_gaps_and_high_at_3() -> None:
    c = customer(days=5, gap_days=30, clock=START + timedelta(days=120))
    last = START + timedelta(days=120)
    first = risk_outlook(c, None, CFG.thresholds, last)
    assert first.current is RiskLevel.LOW
    assert (first.next_at, first.next_level) == (last + timedelta(days=45), RiskLevel.MEDIUM)
    assert first.next_at is not None
    second = risk_outlook(c, None, CFG.thresholds, first.next_at)
    assert second.current is RiskLevel.MEDIUM
    assert (second.next_at, second.next_level) == (last + timedelta(days=90), RiskLevel.HIGH)
    assert second.next_at is not None
    assert risk_outlook(c, None, CFG.thresholds, second.next_at) == RiskOutlook(RiskLevel.HIGH)


def test_one_time_buyer_is_measured_against_the_population_gap() -> None:
    c = customer(days=1, gap_days=0, clock=START)
    outlook = risk_outlook(c, None, CFG.thresholds, START)
    assert outlook.next_at == START + timedelta(days=135)  # 1.5 x 90 days


def test_no_level_no_change_and_churned_never_changes() -> None:
    c = customer(days=3, gap_days=10, clock=START)
    assert risk_outlook(c, MODEL, CFG.thresholds, START, max_days=0).next_at is None
    ended = customer(days=3, gap_days=10, clock=START, ended=True)
    assert risk_outlook(ended, None, CFG.thresholds, START).current is RiskLevel.CHURNED
    assert risk_outlook(ended, None, CFG.thresholds, START).next_at is None
    none = CustomerFigures(0, Decimal(0), Decimal(0), None, None, 0, 0, 0, Decimal(0), None)
    assert risk_outlook(none, None, CFG.thresholds, START).current is None


def test_model_changes_happen_at_utc_midnight_and_only_get_riskier() -> None:
    clock = START + timedelta(days=100)
    c = customer(days=6, gap_days=20, clock=clock)
    seen = []
    while True:
        outlook = risk_outlook(c, MODEL, CFG.thresholds, clock)
        seen.append(outlook.current)
        if outlook.next_at is None:
            break
        assert outlook.next_at.time() == datetime.min.time()
        clock = outlook.next_at
    assert seen == [RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH]


@settings(max_examples=150, deadline=None)
@given(
    days=st.integers(1, 12),
    gap=st.integers(1, 120),
    offset_hours=st.integers(0, 24 * 900),
    fitted=st.booleans(),
    r=st.floats(0.1, 3.0),
    alpha=st.floats(1.0, 200.0),
    a=st.floats(0.05, 3.0),
    b=st.floats(0.5, 10.0),
)
def test_value_changes_exactly_at_the_predicted_instant(
    days: int, gap: int, offset_hours: int, fitted: bool, r: float, alpha: float, a: float, b: float
) -> None:
    last = START + timedelta(days=(days - 1) * gap)
    clock = last + timedelta(hours=offset_hours)
    model = ModelSnapshot("p", MBGNBDParams(r, alpha, a, b), MODEL.spend) if fitted else None
    c = customer(days, gap, clock)
    outlook = risk_outlook(c, model, CFG.thresholds, clock)
    assert outlook.current == level(c, model, clock)
    if outlook.next_at is None:
        assert level(c, model, clock + timedelta(days=3650)) == outlook.current
        return
    assert outlook.next_at > clock
    before = outlook.next_at - timedelta(microseconds=1)
    assert level(c, model, before) == outlook.current
    assert level(c, model, outlook.next_at) == outlook.next_level != outlook.current


def test_a_spend_model_without_a_mean_leaves_predicted_ltv_out_instead_of_nan() -> None:
    """Gamma-Gamma with q <= 1 has infinite mean spend: no NaN/Infinity in an update."""
    broken = ModelSnapshot("bad", MODEL.orders, GammaGammaParams(p=6.25, q=0.9, gamma=15.44))
    clock = START + timedelta(days=10)
    v = value(customer(days=1, gap_days=30, clock=clock), broken, CFG, clock)
    assert v.predicted_ltv is None
    assert v.total_ltv == v.historic_ltv
    assert v.p_alive is not None and v.churn_risk is not None  # the order model still holds


def test_customers_older_than_the_memoized_span_are_searched_directly() -> None:
    """Past ``BOUNDARY_SPAN`` the outlook comes from the direct search, with the same contract."""
    # A very slow decay: still low risk a century after the last order, medium soon after.
    model = ModelSnapshot("p", MBGNBDParams(r=0.5, alpha=8e5, a=0.6, b=0.5), MODEL.spend)
    clock = START + timedelta(days=BOUNDARY_SPAN)
    c = customer(days=2, gap_days=1, clock=clock)
    assert c.t_x + BOUNDARY_SPAN < c.T + MAX_DAYS
    outlook = risk_outlook(c, model, CFG.thresholds, clock)
    assert outlook.current == level(c, model, clock) == RiskLevel.LOW
    assert outlook.next_at is not None
    before = outlook.next_at - timedelta(microseconds=1)
    assert level(c, model, before) == outlook.current
    assert level(c, model, outlook.next_at) == outlook.next_level == RiskLevel.MEDIUM
