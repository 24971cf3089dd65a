"""The sBG retention model (ltv.sbg, docs/valuation.md#subscription-retention-sbg).

Published figures: Fader & Hardie 2007, "How to project customer retention",
J. Interactive Marketing 21(1), fitted on years 1-7 of two cohorts of 1 000;
the paper also lists the actual survivors of years 8-12, used here to judge
the projections. Reference values are computed independently of
the module: by numerical integration over the beta mixing distribution, by
the paper's period-by-period recursions, and by summing the DERL series term
by term.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import beta as beta_fn
from scipy.special import hyp2f1

from ltv import sbg

# Survivors at the start of years 0-12 per 1 000 acquired (FH 2007).
REGULAR = [1000, 631, 468, 382, 326, 289, 262, 241, 223, 207, 194, 183, 173]
HIGH_END = [1000, 869, 743, 653, 593, 551, 517, 491, 468, 445, 427, 409, 394]
CALIBRATION_YEARS = 7
# FH 2007: (gamma, delta, log-likelihood) of the fit on years 1-7.
PUBLISHED = {"regular": (0.704, 1.182, -1680.3), "high end": (0.668, 3.806, -1611.2)}
COHORTS = {"regular": REGULAR, "high end": HIGH_END}
PARAMS = [
    sbg.SBGParams(0.704, 1.182),
    sbg.SBGParams(0.668, 3.806),
    sbg.SBGParams(3.0, 0.4),
    sbg.SBGParams(0.2, 15.0),
]


def integrated(params: sbg.SBGParams, integrand_exponents: tuple[int, int]) -> float:
    """E[theta^i (1 - theta)^j] over theta ~ Beta(gamma, delta), by adaptive quadrature.

    The beta density is passed as quad's algebraic weight so that its
    endpoint singularities (gamma or delta < 1) are integrated exactly.
    """
    i, j = integrand_exponents
    value, _ = quad(
        lambda theta: theta**i * (1.0 - theta) ** j,
        0.0,
        1.0,
        weight="alg",
        wvar=(params.gamma - 1.0, params.delta - 1.0),
        epsabs=0.0,
        epsrel=1e-12,
        limit=200,
    )
    return float(value / beta_fn(params.gamma, params.delta))


def recursion_survival(params: sbg.SBGParams, k: int) -> np.ndarray:
    """S(0..k) by FH 2007's recursion S(t) = S(t-1) (delta+t-1)/(gamma+delta+t-1), in logs."""
    t = np.arange(1, k + 1, dtype=np.float64)
    steps = np.log1p(-params.gamma / (params.gamma + params.delta + t - 1.0))
    return np.exp(np.concatenate(([0.0], np.cumsum(steps))))


def series_derl(params: sbg.SBGParams, n: int, d: float) -> float:
    """sum_{t > n} S(t)/S(n) (1+d)^-(t-n-1), summed term by term until negligible."""
    j = np.arange(int(45.0 / math.log1p(d)) + 10, dtype=np.float64)
    t = n + 1.0 + j
    # S(t)/S(n) = prod_{i=n+1..t} (delta+i-1)/(gamma+delta+i-1), cumulated in logs.
    ratios = np.cumsum(np.log1p(-params.gamma / (params.gamma + params.delta + t - 1.0)))
    return math.fsum(np.exp(ratios - j * math.log1p(d)))


def simulate(
    params: sbg.SBGParams, rng: np.random.Generator, size: int, horizons: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(renewals, active) from the model's own story; horizons=None observes every lifetime."""
    theta = rng.beta(params.gamma, params.delta, size)
    lifetime = rng.geometric(theta)  # period in which the subscriber is lost, 1, 2, ...
    if horizons is None:
        return lifetime - 1, np.zeros(size, dtype=bool)
    active = lifetime > horizons
    return np.where(active, horizons, lifetime - 1), active


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_reproduces_fader_hardie_2007(name: str) -> None:
    gamma, delta, ll = PUBLISHED[name]
    cohort = COHORTS[name]
    result = sbg.fit_cohort(cohort[: CALIBRATION_YEARS + 1])
    assert result.converged
    assert result.n == 1000
    assert result.params.gamma == pytest.approx(gamma, rel=0.005)
    assert result.params.delta == pytest.approx(delta, rel=0.005)
    assert result.log_likelihood == pytest.approx(ll, abs=0.1)
    published = sbg.SBGParams(gamma, delta)
    assert sbg.cohort_log_likelihood(published, cohort[: CALIBRATION_YEARS + 1]) == pytest.approx(
        ll, abs=0.1
    )

    years = np.arange(CALIBRATION_YEARS + 1, len(cohort))
    projected = 1000.0 * sbg.survival(result.params, years)
    actual = np.array(cohort[CALIBRATION_YEARS + 1 :], dtype=np.float64)
    print(
        f"\n{name}: gamma = {result.params.gamma:.4f}, delta = {result.params.delta:.4f}, "
        f"LL = {result.log_likelihood:.2f} (published {gamma}, {delta}, {ll})"
    )
    print("year  projected  actual  error")
    for year, p, a in zip(years, projected, actual, strict=True):
        print(f"{year:>4}  {p:9.1f}  {a:6.0f}  {100.0 * (p / a - 1.0):+5.1f} %")
    assert np.all(np.diff(projected) < 0)
    assert np.all(np.diff(sbg.retention_rate(result.params, np.arange(1, len(cohort)))) > 0)
    # Five years beyond the data the projection stays within 5 % of what happened.
    np.testing.assert_allclose(projected, actual, rtol=0.05)


@pytest.mark.parametrize("params", PARAMS)
def test_survival_and_lifetime_match_integration_over_theta(params: sbg.SBGParams) -> None:
    for t in (0, 1, 2, 5, 20, 100):
        assert float(sbg.survival(params, t)) == pytest.approx(integrated(params, (0, t)), rel=1e-9)
    for t in (1, 2, 5, 20, 100):
        assert float(sbg.lifetime_probability(params, t)) == pytest.approx(
            integrated(params, (1, t - 1)), rel=1e-9
        )


@pytest.mark.parametrize("params", PARAMS)
def test_closed_forms_agree_with_the_recursions(params: sbg.SBGParams) -> None:
    k = 2000
    t = np.arange(k + 1)
    s = sbg.survival(params, t)
    np.testing.assert_allclose(s, recursion_survival(params, k), rtol=1e-10)
    p = sbg.lifetime_probability(params, t[1:])
    assert p[0] == pytest.approx(params.gamma / (params.gamma + params.delta), rel=1e-13)
    np.testing.assert_allclose(
        p[1:] / p[:-1],
        (params.delta + t[2:] - 2.0) / (params.gamma + params.delta + t[2:] - 1.0),
        rtol=1e-10,
    )
    # The difference cancels most digits of S far out (S ~ 100 P at t = 500).
    np.testing.assert_allclose(p, s[:-1] - s[1:], rtol=1e-7, atol=1e-300)
    np.testing.assert_allclose(
        sbg.retention_rate(params, t[1:]), s[1:] / s[:-1], rtol=1e-10, atol=1e-300
    )


def test_large_horizons_stay_finite_and_accurate() -> None:
    params = sbg.SBGParams(0.704, 1.182)
    far = 100_000
    reference = recursion_survival(params, far)[-1]
    assert float(sbg.survival(params, far)) == pytest.approx(reference, rel=1e-8)
    ends = sbg.survival(params, [1e6, 1e9]), sbg.lifetime_probability(params, [1e6, 1e9])
    for values in ends:
        assert np.all(np.isfinite(values)) and np.all(values > 0)


def test_retention_rises_under_heterogeneity_and_is_flat_without_it() -> None:
    rising = sbg.retention_rate(sbg.SBGParams(0.704, 1.182), np.arange(1, 50))
    assert np.all(np.diff(rising) > 0) and np.all(rising < 1)
    # gamma, delta -> inf with gamma/(gamma+delta) = 10 %: everyone churns at 10 %.
    alike = sbg.retention_rate(sbg.SBGParams(1e7, 9e7), np.arange(1, 50))
    np.testing.assert_allclose(alike, 0.9, rtol=1e-5)


DERL_CASES = [
    (params, n, d)
    for params in [*PARAMS, sbg.SBGParams(1.0, 2.5), sbg.SBGParams(2.0, 0.7)]
    for n in (0, 1, 10, 100, 1000)
    for d in (0.001, (1.1 ** (1 / 12)) - 1.0, 0.1, 1.0)
]


@pytest.mark.parametrize(("params", "n", "d"), DERL_CASES)
def test_derl_closed_form_matches_the_series(params: sbg.SBGParams, n: int, d: float) -> None:
    assert float(sbg.derl(params, n, d)) == pytest.approx(series_derl(params, n, d), rel=1e-10)


def test_derl_is_fader_hardie_2010_closed_form_where_scipy_evaluates_it() -> None:
    """FH 2010's formula through scipy's own 2F1, in a range where scipy is accurate."""
    for params in PARAMS:
        for n in (0, 1, 5):
            for d in (0.1, 0.5):
                g, dl = params.gamma, params.delta
                closed = (
                    (dl + n) / (g + dl + n) * hyp2f1(1.0, dl + n + 1, g + dl + n + 1, 1 / (1 + d))
                )
                assert float(sbg.derl(params, n, d)) == pytest.approx(closed, rel=1e-9)


def test_derl_vectorised_and_limits() -> None:
    params = sbg.SBGParams(0.704, 1.182)
    n = np.arange(0, 40)
    monthly = sbg.derl(params, n, 0.008)
    assert monthly.shape == n.shape
    np.testing.assert_allclose(monthly, [float(sbg.derl(params, k, 0.008)) for k in n], rtol=1e-14)
    # Longer tenure: the survivors are the loyal ones, so more is left to come.
    assert np.all(np.diff(monthly) > 0)
    rates = np.array([0.0001, 0.001, 0.01, 0.1, 1.0])
    assert np.all(np.diff(sbg.derl(params, 3, rates)) < 0)
    # d = 0: expected renewals to come, finite only when the lifetime has a mean.
    assert np.isinf(sbg.derl(params, 3, 0.0))
    mean_lifetime = sbg.SBGParams(2.5, 4.0)
    assert float(sbg.derl(mean_lifetime, 3, 0.0)) == pytest.approx((4.0 + 3) / 1.5, rel=1e-14)
    assert float(sbg.derl(mean_lifetime, 3, 1e-4)) < (4.0 + 3) / 1.5


def test_derl_reduces_to_the_constant_churn_formula_without_heterogeneity() -> None:
    """Everyone at churn c: DERL = (1-c)(1+d)/(d+c), the discounted geometric series."""
    c, d = 0.1, 0.01
    alike = sbg.SBGParams(c * 1e8, (1 - c) * 1e8)
    assert float(sbg.derl(alike, 7, d)) == pytest.approx((1 - c) * (1 + d) / (d + c), rel=1e-6)


def test_expected_residual_value_is_derl_times_charge_times_margin() -> None:
    params = sbg.SBGParams(0.668, 3.806)
    value = sbg.expected_residual_value(params, [0, 12], 0.008, [300.0, 150.0], 0.4)
    expected = sbg.derl(params, [0, 12], 0.008) * np.array([300.0, 150.0]) * 0.4
    np.testing.assert_allclose(value, expected, rtol=1e-15)


@pytest.mark.parametrize("name", list(COHORTS))
def test_individual_likelihood_equals_cohort_likelihood(name: str) -> None:
    alive = np.array(COHORTS[name][: CALIBRATION_YEARS + 1])
    lost = -np.diff(alive)
    # One row per subscriber: lost in year t after t - 1 renewals, survivors active after 7.
    renewals = np.concatenate([np.repeat(np.arange(CALIBRATION_YEARS), lost), [7] * alive[-1]])
    active = np.concatenate([np.zeros(lost.sum(), dtype=bool), np.ones(alive[-1], dtype=bool)])
    assert len(renewals) == 1000
    for params in PARAMS:
        cohort = sbg.cohort_log_likelihood(params, alive)
        assert sbg.log_likelihood(params, renewals, active) == pytest.approx(cohort, rel=1e-12)
        assert sbg.cohort_log_likelihood(params, alive, weight=2.5) == pytest.approx(2.5 * cohort)
    individual, cohort_fit = sbg.fit(renewals, active), sbg.fit_cohort(alive)
    assert individual.n == cohort_fit.n == 1000
    assert individual.log_likelihood == pytest.approx(cohort_fit.log_likelihood, abs=1e-6)
    assert individual.params.gamma == pytest.approx(cohort_fit.params.gamma, rel=1e-5)
    assert individual.params.delta == pytest.approx(cohort_fit.params.delta, rel=1e-5)


def test_weights_equal_repeated_subscribers() -> None:
    rng = np.random.default_rng(7)
    renewals, active = simulate(sbg.SBGParams(0.7, 1.2), rng, 2000, rng.integers(1, 13, 2000))
    counts = rng.integers(1, 4, 2000)
    weighted = sbg.fit(renewals, active, weights=counts)
    repeated = sbg.fit(np.repeat(renewals, counts), np.repeat(active, counts))
    assert weighted.n == counts.sum()
    assert weighted.log_likelihood == pytest.approx(repeated.log_likelihood, rel=1e-12)
    assert weighted.params.gamma == pytest.approx(repeated.params.gamma, rel=1e-6)


# Standard errors at this size (observed information) are at most 1.6 % for
# gamma and 2.3 % for delta, in the censored high-end case: the tolerances are
# about three and a half of them.
@pytest.mark.parametrize(
    ("truth", "censored"),
    [
        (sbg.SBGParams(0.7, 1.2), False),
        (sbg.SBGParams(0.7, 1.2), True),
        (sbg.SBGParams(0.67, 3.8), True),
    ],
)
def test_fit_recovers_simulated_parameters(truth: sbg.SBGParams, censored: bool) -> None:
    rng = np.random.default_rng(20070101)
    size = 50_000
    # Censored: acquired over the last two years of monthly renewals, still running or not.
    horizons = rng.integers(1, 25, size) if censored else None
    renewals, active = simulate(truth, rng, size, horizons)
    assert active.any() == censored
    result = sbg.fit(renewals, active)
    assert result.converged
    assert result.n == size
    assert result.params.gamma == pytest.approx(truth.gamma, rel=0.06)
    assert result.params.delta == pytest.approx(truth.delta, rel=0.08)


def test_rejects_malformed_input() -> None:
    params = sbg.SBGParams(0.7, 1.2)
    with pytest.raises(ValueError, match="positive"):
        sbg.SBGParams(0.0, 1.0)
    with pytest.raises(ValueError, match="whole numbers"):
        sbg.survival(params, 1.5)
    with pytest.raises(ValueError, match=">= 1"):
        sbg.lifetime_probability(params, 0)
    with pytest.raises(ValueError, match="same shape"):
        sbg.fit([1, 2], [True])
    with pytest.raises(ValueError, match="not increase"):
        sbg.fit_cohort([1000, 600, 700])
    with pytest.raises(ValueError, match=r"periods 0\.\.k"):
        sbg.fit_cohort([1000])
    with pytest.raises(ValueError, match="discount_rate"):
        sbg.derl(params, 3, -0.01)
