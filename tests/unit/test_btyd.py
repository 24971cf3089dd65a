"""Behaviour of the BTYD models, the spend model and discounted CLV (docs/valuation.md).

Reference values come from straightforward transcriptions of the papers'
formulas (no log-space, no Euler transformation), from numerical integration,
or from simulation; the production code must agree with each.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad
from scipy.special import beta as beta_fn
from scipy.special import hyp2f1
from scipy.stats import gamma as gamma_dist

from ltv import bgnbd, clv, gammagamma, mbgnbd, paretonbd
from ltv.betageo import BetaGeoParams
from ltv.orders import OrdersParams, family_of
from ltv.summary import summarise

BG_WEEK = bgnbd.BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
MBG_WEEK = mbgnbd.MBGNBDParams(r=0.525, alpha=6.183, a=0.891, b=1.614)
PARETO_WEEK = paretonbd.ParetoNBDParams(r=0.553, alpha=10.578, s=0.606, beta=11.669)
SPEND = gammagamma.GammaGammaParams(p=6.25, q=3.74, gamma=15.44)
CUSTOMERS = [(0, 0.0, 30.0), (1, 2.0, 38.0), (2, 30.43, 38.86), (7, 35.0, 36.0), (15, 10.0, 70.0)]


def naive_likelihood(params: BetaGeoParams, x: int, t_x: float, T: float) -> float:
    """FHL 2005 eq. 6 (m=0) / Batislam et al. 2007 eq. 3 (m=1), as printed."""
    r, alpha, a, b, m = params.r, params.alpha, params.a, params.b, params.offset
    head = math.gamma(r + x) * alpha**r / math.gamma(r)
    value = beta_fn(a, b + x + m) / beta_fn(a, b) * head / (alpha + T) ** (r + x)
    if x > 0 or m == 1:
        value += beta_fn(a + 1, b + x - 1 + m) / beta_fn(a, b) * head / (alpha + t_x) ** (r + x)
    return float(value)


def naive_p_alive(params: BetaGeoParams, x: int, t_x: float, T: float) -> float:
    r, alpha, a, b, m = params.r, params.alpha, params.a, params.b, params.offset
    if x == 0 and m == 0:
        return 1.0
    return float(1.0 / (1.0 + a / (b + x - 1 + m) * ((alpha + T) / (alpha + t_x)) ** (r + x)))


def naive_expected(params: BetaGeoParams, t: float, x: int, t_x: float, T: float) -> float:
    """FHL 2005 eq. 10 / Batislam et al. 2007 eq. 8 with the untransformed 2F1."""
    r, alpha, a, b, m = params.r, params.alpha, params.a, params.b, params.offset
    z = t / (alpha + T + t)
    hyper = hyp2f1(r + x, b + x + m, a + b + x - 1 + m, z)
    bracket = 1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyper
    return float((a + b + x - 1 + m) / (a - 1) * bracket * naive_p_alive(params, x, t_x, T))


@pytest.mark.parametrize("params", [BG_WEEK, MBG_WEEK])
def test_log_likelihood_matches_paper_formula(params: BetaGeoParams) -> None:
    for x, t_x, T in CUSTOMERS:
        ours = float(bgnbd.log_likelihood(params, x, t_x, T))
        assert ours == pytest.approx(math.log(naive_likelihood(params, x, t_x, T)), rel=1e-12)


@pytest.mark.parametrize("params", [BG_WEEK, MBG_WEEK])
def test_predictions_match_paper_formulas(params: BetaGeoParams) -> None:
    for x, t_x, T in CUSTOMERS:
        for t in (0.5, 10.0, 39.0, 200.0):
            expected = naive_expected(params, t, x, t_x, T)
            assert float(bgnbd.expected_orders(params, t, x, t_x, T)) == pytest.approx(
                expected, rel=1e-9
            )
            assert bgnbd.expected_orders_scalar(params, t, x, t_x, T) == pytest.approx(
                expected, rel=1e-9
            )
        alive = naive_p_alive(params, x, t_x, T)
        assert float(bgnbd.p_alive(params, x, t_x, T)) == pytest.approx(alive, rel=1e-12)
        assert bgnbd.p_alive_scalar(params, x, t_x, T) == pytest.approx(alive, rel=1e-12)


def test_one_time_buyers_can_be_dead_only_under_mbgnbd() -> None:
    ages = np.array([1.0, 10.0, 100.0, 1000.0])
    np.testing.assert_array_equal(bgnbd.p_alive(BG_WEEK, 0, 0.0, ages), 1.0)
    mbg = mbgnbd.p_alive(MBG_WEEK, 0, 0.0, ages)
    assert np.all(mbg < 1.0)
    assert np.all(np.diff(mbg) < 0)


def test_expected_orders_start_at_zero_and_grow_with_horizon() -> None:
    horizons = np.linspace(0.0, 500.0, 51)
    for params in (BG_WEEK, MBG_WEEK):
        curve = bgnbd.expected_orders(params, horizons, 3, 20.0, 30.0)
        assert curve[0] == 0.0
        assert np.all(np.diff(curve) > 0)


def test_time_unit_is_a_rescaling() -> None:
    daily = MBG_WEEK.rescale_time(7.0)
    assert daily.alpha == pytest.approx(7.0 * MBG_WEEK.alpha)
    weekly_value = mbgnbd.expected_orders(MBG_WEEK, 52.0, 4, 20.0, 30.0)
    daily_value = mbgnbd.expected_orders(daily, 364.0, 4, 140.0, 210.0)
    assert float(daily_value) == pytest.approx(float(weekly_value), rel=1e-12)


def test_expectation_is_continuous_through_a_equal_one() -> None:
    """(bracket / (a - 1)) is a removable singularity at a = 1."""
    values = [
        float(bgnbd.expected_orders(bgnbd.BGNBDParams(0.5, 5.0, a, 2.0), 20.0, 2, 10.0, 30.0))
        for a in (1.0 - 1e-4, 1.0, 1.0 + 1e-4)
    ]
    assert all(math.isfinite(v) for v in values)
    assert values[1] == pytest.approx(0.5 * (values[0] + values[2]), rel=1e-6)


positive = st.floats(min_value=0.01, max_value=50.0)
scale = st.floats(min_value=0.01, max_value=1e4)


@settings(max_examples=300, deadline=None)
@given(
    r=positive,
    alpha=scale,
    a=positive,
    b=positive,
    mbg=st.booleans(),
    x=st.integers(min_value=0, max_value=5000),
    T=st.floats(min_value=0.0, max_value=50_000.0),
    share=st.floats(min_value=0.0, max_value=1.0),
    t=st.floats(min_value=0.0, max_value=3650.0),
)
def test_stable_over_wide_ranges(
    r: float,
    alpha: float,
    a: float,
    b: float,
    mbg: bool,
    x: int,
    T: float,
    share: float,
    t: float,
) -> None:
    params: BetaGeoParams = (
        mbgnbd.MBGNBDParams(r, alpha, a, b) if mbg else bgnbd.BGNBDParams(r, alpha, a, b)
    )
    t_x = T * share if x > 0 else 0.0
    ll = float(bgnbd.log_likelihood(params, x, t_x, T))
    assert math.isfinite(ll)
    alive = float(bgnbd.p_alive(params, x, t_x, T))
    assert 0.0 <= alive <= 1.0
    assert alive == pytest.approx(bgnbd.p_alive_scalar(params, x, t_x, T), rel=1e-9, abs=1e-300)
    curve = bgnbd.expected_orders(params, np.array([t, 2.0 * t]), x, t_x, T)
    assert np.all(np.isfinite(curve))
    tolerance = 1e-7 * (1.0 + abs(float(curve[1])))
    assert curve[0] >= -tolerance
    assert curve[1] >= curve[0] - tolerance
    det = float(clv.discounted_expected_orders(params, x, t_x, T, horizon=t)[0])
    assert math.isfinite(det)
    undiscounted = float(bgnbd.expected_orders(params, t, x, t_x, T))
    assert det <= undiscounted + tolerance
    assert det >= undiscounted / 1.1 ** (t / 365.0) - tolerance


def brute_force_det(params: OrdersParams, x: int, t_x: float, T: float, horizon: float) -> float:
    """Stieltjes sum of e^(-delta s) dE[Y(s)] on a fine uniform grid (midpoint rule)."""
    delta = math.log(1.1) / 365.0
    grid = np.linspace(0.0, horizon, 200_001)
    family = family_of(params)
    curve = family.p_alive(params, x, t_x, T) * family.growth_curve(params, x, T, grid)
    midpoints = 0.5 * (grid[1:] + grid[:-1])
    return float(np.sum(np.exp(-delta * midpoints) * np.diff(curve)))


@pytest.mark.parametrize(
    ("params", "x", "t_x", "T"),
    [
        (MBG_WEEK.rescale_time(7.0), 0, 0.0, 0.0),
        (MBG_WEEK.rescale_time(7.0), 0, 0.0, 200.0),
        (BG_WEEK.rescale_time(7.0), 4, 150.0, 260.0),
        (mbgnbd.MBGNBDParams(2.0, 0.05, 0.3, 5.0), 1, 1.0, 1.0),
        (bgnbd.BGNBDParams(0.3, 30.0, 3.0, 0.5), 400, 9_000.0, 9_100.0),
        (PARETO_WEEK.rescale_time(7.0), 0, 0.0, 0.0),
        (PARETO_WEEK.rescale_time(7.0), 2, 30.0, 200.0),
        (PARETO_WEEK.rescale_time(7.0), 26, 216.0, 217.0),
        (paretonbd.ParetoNBDParams(0.3, 30.0, 1.0, 0.5), 400, 9_000.0, 9_100.0),
    ],
)
def test_discounted_orders_match_brute_force_integration(
    params: OrdersParams, x: int, t_x: float, T: float
) -> None:
    brute = brute_force_det(params, x, t_x, T, 365.0)
    vector = float(clv.discounted_expected_orders(params, x, t_x, T)[0])
    scalar = clv.value_customer(params, SPEND, x, t_x, T, 40.0).discounted_orders
    assert vector == pytest.approx(brute, rel=1e-7)
    assert scalar == pytest.approx(brute, rel=1e-7)


@pytest.mark.parametrize("params", [MBG_WEEK.rescale_time(7.0), PARETO_WEEK.rescale_time(7.0)])
def test_discounting_lowers_value_and_zero_rate_gives_expected_orders(
    params: OrdersParams,
) -> None:
    undiscounted = float(family_of(params).expected_orders(params, 365.0, 3, 100.0, 200.0))
    at_zero = clv.value_customer(params, SPEND, 3, 100.0, 200.0, 40.0, annual_discount_rate=0.0)
    at_ten = clv.value_customer(params, SPEND, 3, 100.0, 200.0, 40.0)
    assert at_zero.discounted_orders == pytest.approx(undiscounted, rel=1e-12)
    assert at_zero.expected_orders == pytest.approx(undiscounted, rel=1e-12)
    assert undiscounted / 1.1 < at_ten.discounted_orders < undiscounted
    empty = clv.value_customer(params, SPEND, 3, 100.0, 200.0, 40.0, horizon=0.0)
    assert empty.predicted_ltv == 0.0


def test_scalar_valuation_matches_vectorised_clv() -> None:
    params = MBG_WEEK.rescale_time(7.0)
    x = np.array([0.0, 1.0, 5.0, 30.0])
    t_x = np.array([0.0, 20.0, 200.0, 250.0])
    T = np.array([10.0, 100.0, 260.0, 260.0])
    zbar = np.array([0.0, 25.0, 40.0, 90.0])
    vector = clv.predicted_clv(params, SPEND, x, t_x, T, zbar)
    for i in range(len(x)):
        one = clv.value_customer(params, SPEND, x[i], t_x[i], T[i], zbar[i])
        assert one.predicted_ltv == pytest.approx(vector[i], rel=1e-12)
        assert one.predicted_ltv == pytest.approx(one.expected_spend * one.discounted_orders)
        assert one.p_alive == pytest.approx(float(mbgnbd.p_alive(params, x[i], t_x[i], T[i])))


def test_gammagamma_density_matches_numerical_mixture() -> None:
    """f(zbar) = integral Gamma(px, nu) density of the total * x * Gamma(q, gamma)(nu) dnu."""
    for x, zbar in ((1, 12.0), (3, 40.0), (9, 7.5)):

        def integrand(nu: float, x: int = x, zbar: float = zbar) -> float:
            total_density = gamma_dist.pdf(x * zbar, SPEND.p * x, scale=1.0 / nu)
            prior = gamma_dist.pdf(nu, SPEND.q, scale=1.0 / SPEND.gamma)
            return float(total_density * x * prior)

        numeric, _ = quad(integrand, 0.0, np.inf, limit=200)
        ours = float(gammagamma.log_likelihood(SPEND, x, zbar))
        assert ours == pytest.approx(math.log(numeric), rel=1e-7)


def test_expected_spend_shrinks_towards_population_mean() -> None:
    population = SPEND.p * SPEND.gamma / (SPEND.q - 1.0)
    assert float(gammagamma.conditional_expected_spend(SPEND, 0, 0.0)) == pytest.approx(population)
    few = float(gammagamma.conditional_expected_spend(SPEND, 1, 100.0))
    many = float(gammagamma.conditional_expected_spend(SPEND, 1000, 100.0))
    assert population < few < many < 100.0
    assert many == pytest.approx(100.0, rel=1e-3)
    assert gammagamma.conditional_expected_spend_scalar(SPEND, 1, 100.0) == pytest.approx(few)
    heavy_tail = gammagamma.GammaGammaParams(p=1.0, q=0.5, gamma=10.0)
    assert math.isinf(float(gammagamma.conditional_expected_spend(heavy_tail, 0, 0.0)))


@pytest.mark.parametrize(
    ("module", "truth"),
    [
        (bgnbd, bgnbd.BGNBDParams(0.5, 20.0, 0.8, 2.5)),
        (mbgnbd, mbgnbd.MBGNBDParams(0.6, 40.0, 0.9, 1.6)),
    ],
)
def test_fit_recovers_simulated_parameters(module: object, truth: BetaGeoParams) -> None:
    rng = np.random.default_rng(20050101)
    T = rng.uniform(30.0, 400.0, 30_000)
    x, t_x = bgnbd.simulate(truth, T, rng)
    fit = module.fit(x, t_x, T)  # type: ignore[attr-defined]
    assert fit.converged
    for name in ("r", "alpha", "a", "b"):
        assert getattr(fit.params, name) == pytest.approx(getattr(truth, name), rel=0.15)


def test_weights_equal_repeated_rows() -> None:
    rng = np.random.default_rng(11)
    T = rng.uniform(30.0, 300.0, 3000)
    x, t_x = mbgnbd.simulate(MBG_WEEK.rescale_time(7.0), T, rng)
    counts = rng.integers(1, 4, len(T))
    weighted = mbgnbd.fit(x, t_x, T, weights=counts)
    repeated = mbgnbd.fit(np.repeat(x, counts), np.repeat(t_x, counts), np.repeat(T, counts))
    assert weighted.n == counts.sum()
    assert weighted.log_likelihood == pytest.approx(repeated.log_likelihood, rel=1e-9)
    assert weighted.params.r == pytest.approx(repeated.params.r, rel=1e-4)


def test_fit_rejects_inconsistent_summaries() -> None:
    with pytest.raises(ValueError, match="t_x"):
        bgnbd.fit([1.0], [5.0], [4.0])
    with pytest.raises(ValueError, match="t_x must be 0"):
        mbgnbd.fit([0.0], [1.0], [4.0])
    with pytest.raises(ValueError, match="positive"):
        bgnbd.BGNBDParams(0.0, 1.0, 1.0, 1.0)


def test_summarise_counts_distinct_days_and_repeat_spend() -> None:
    customer = [7, 7, 7, 7, 9, 9, 5]
    day = [0.0, 0.0, 3.0, 10.0, 2.0, 50.0, 60.0]
    value = [10.0, 5.0, 0.0, 20.0, 8.0, 1.0, 3.0]
    s = summarise(customer, day, value, as_of=20.0)
    assert s.customer.tolist() == [7, 9]  # customer 5 first buys after as_of
    np.testing.assert_array_equal(s.x, [2.0, 0.0])  # two orders on day 0 are one purchase
    np.testing.assert_array_equal(s.t_x, [10.0, 0.0])
    np.testing.assert_array_equal(s.T, [20.0, 18.0])
    np.testing.assert_array_equal(s.zbar, [10.0, 0.0])  # (0 + 20) / 2: zero-value day counts
