"""Pareto/NBD (ltv.paretonbd; docs/valuation.md).

References: the CDNOW fit in weeks and the example customer (x = 26,
t_x = 30.86, T = 31) published by Fader, Hardie & Lee, and a brute-force
integration of the individual-level model over both gamma mixing
distributions, which shares nothing with the closed forms (no hypergeometric
function, no integral over the time of death).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from cdnow import calibration_summaries, load_rows
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import gammaln, logsumexp

from ltv import paretonbd
from ltv.fitting import FitResult
from ltv.paretonbd import ParetoNBDParams
from ltv.summary import Summaries

PUBLISHED = ParetoNBDParams(r=0.553, alpha=10.578, s=0.606, beta=11.669)
DAILY = PUBLISHED.rescale_time(7.0)


@dataclass(frozen=True)
class Mixture:
    """Likelihood, P(alive) and E[orders in (T, T+t]] by integrating over (lambda, mu)."""

    log_likelihood: float
    p_alive: float
    expected: float


def brute_force(params: ParetoNBDParams, x: int, t_x: float, T: float, t: float) -> Mixture:
    """Trapezoid rule in (log lambda, log mu) over the individual-level model.

    Given (lambda, mu), the history has probability density
    lambda^x e^-(lambda+mu)T (alive at T) + lambda^x mu/(lambda+mu)
    (e^-(lambda+mu)t_x - e^-(lambda+mu)T) (died in (t_x, T]); weighting by the
    two gamma densities and integrating gives the likelihood. In log variables
    the integrand is smooth and decays at least exponentially, where the
    trapezoid rule converges geometrically; the grid spans the bulk of both
    posteriors with 40 e-folds to spare on the slowly decaying side.
    """
    r, alpha, s, beta = params.r, params.alpha, params.s, params.beta
    # Steps well inside the posterior widths, ~1/sqrt(shape) in log variables.
    du = min(0.06, 0.6 / math.sqrt(r + x))
    dv = min(0.06, 0.6 / math.sqrt(s + 1.0))
    u_top = math.log((r + x) / (alpha + t_x)) + 5.0
    u_low = math.log((r + x) / (alpha + T)) - 40.0 / (r + x) - 5.0
    v_top = math.log((s + 1.0) / (beta + t_x)) + 5.0
    v_low = math.log(s / (beta + T)) - 40.0 / s - 5.0
    u = np.arange(u_low, u_top, du)[:, None]
    v = np.arange(v_low, v_top, dv)[None, :]
    lam, mu = np.exp(u), np.exp(v)
    log_prior = (
        r * math.log(alpha) - gammaln(r) + r * u - alpha * lam
        + s * math.log(beta) - gammaln(s) + s * v - beta * mu
    )  # fmt: skip
    rate = lam + mu
    log_alive = x * u - rate * T
    with np.errstate(divide="ignore"):
        log_died = x * u + v - np.log(rate) - rate * t_x + np.log(-np.expm1(-rate * (T - t_x)))
    log_step = math.log(du * dv)
    log_total = float(logsumexp(log_prior + np.logaddexp(log_alive, log_died))) + log_step
    log_alive_mass = float(logsumexp(log_prior + log_alive)) + log_step
    orders = lam / mu * -np.expm1(-mu * t)
    log_future = float(logsumexp(log_prior + log_alive, b=orders)) + log_step
    return Mixture(
        log_total, math.exp(log_alive_mass - log_total), math.exp(log_future - log_total)
    )


# (params, x, t_x, T): one-time buyers young and old, the worked customer, a
# heavy buyer over a long history in days, alpha == beta, and alpha/beta far
# apart so that the hypergeometric argument exceeds 0.9 (the integral branch),
# with integer s + 1 and r + x where scipy's connection formulas are
# degenerate, a frequent buyer there, and s = 1 exactly.
CASES = [
    (PUBLISHED, 0, 0.0, 5.0),
    (PUBLISHED, 0, 0.0, 78.0),
    (PUBLISHED, 26, 30.86, 31.0),
    (PUBLISHED, 3, 10.0, 39.0),
    (DAILY, 0, 0.0, 20_000.0),
    (DAILY, 400, 19_950.0, 20_000.0),
    (ParetoNBDParams(0.8, 400.0, 1.0, 3.0), 0, 0.0, 30.0),
    (ParetoNBDParams(1.0, 2.0, 0.5, 500.0), 0, 0.0, 60.0),
    (ParetoNBDParams(0.5, 1.0, 2.0, 5_000.0), 1, 0.5, 200.0),
    (ParetoNBDParams(0.5, 5_000.0, 0.7, 2.0), 50, 1.0, 30.0),
    (ParetoNBDParams(0.7, 1.0, 1.0, 30_000.0), 2, 0.1, 50.0),
    (ParetoNBDParams(0.3, 30.0, 0.7, 30.0), 5, 40.0, 90.0),
]


@pytest.mark.parametrize(("params", "x", "t_x", "T"), CASES)
def test_matches_integration_over_the_mixing_distributions(
    params: ParetoNBDParams, x: int, t_x: float, T: float
) -> None:
    horizon = 52.0 if params is PUBLISHED else 365.0
    reference = brute_force(params, x, t_x, T, horizon)
    ll = float(paretonbd.log_likelihood(params, x, t_x, T))
    assert ll == pytest.approx(reference.log_likelihood, abs=1e-9)
    assert float(paretonbd.p_alive(params, x, t_x, T)) == pytest.approx(
        reference.p_alive, rel=1e-9, abs=1e-12
    )
    assert paretonbd.p_alive_scalar(params, x, t_x, T) == pytest.approx(
        reference.p_alive, rel=1e-9, abs=1e-12
    )
    expected = float(paretonbd.expected_orders(params, horizon, x, t_x, T))
    assert expected == pytest.approx(reference.expected, rel=1e-8)
    assert paretonbd.expected_orders_scalar(params, horizon, x, t_x, T) == pytest.approx(
        reference.expected, rel=1e-8
    )


def test_published_example_customer() -> None:
    """x = 26, t_x = 30.86, T = 31 weeks under the CDNOW parameters."""
    assert float(paretonbd.p_alive(PUBLISHED, 26, 30.86, 31.0)) == pytest.approx(0.998, abs=1e-3)
    expected = float(paretonbd.expected_orders(PUBLISHED, 52.0, 26, 30.86, 31.0))
    assert expected == pytest.approx(25.5, abs=0.1)


def test_continuous_where_the_evaluation_switches_branch() -> None:
    """Through alpha == beta (the 2F1 representation flips) and z = 0.9 (series -> integral).

    At t_x = 0, z = |alpha - beta| / max(alpha, beta): 0.9 at beta = alpha/10 and
    at beta = 10 alpha. Each log-likelihood across a switch must lie on the
    smooth curve through its neighbours (second difference ~ step^2).
    """
    x, t_x, T = np.array([0.0, 2.0]), np.array([0.0, 3.0]), np.array([40.0, 40.0])
    for centre in (10.0, 1.0, 100.0):
        step = 1e-4 * centre
        values = [
            paretonbd.log_likelihood(ParetoNBDParams(0.6, 10.0, 0.7, beta), x, t_x, T)
            for beta in (centre - 2 * step, centre - step, centre, centre + step, centre + 2 * step)
        ]
        second = values[0] - 2 * values[2] + values[4]
        np.testing.assert_allclose(values[1] - 2 * values[2] + values[3], second / 4, atol=1e-11)


def test_one_time_buyers_fade_with_age() -> None:
    ages = np.array([1.0, 10.0, 100.0, 1000.0])
    alive = paretonbd.p_alive(PUBLISHED, 0, 0.0, ages)
    assert np.all(np.diff(alive) < 0)
    assert alive[-1] < 0.2
    # Buying at the very end of observation proves being alive then.
    assert float(paretonbd.p_alive(PUBLISHED, 4, 30.0, 30.0)) == 1.0
    assert paretonbd.p_alive_scalar(PUBLISHED, 4, 30.0, 30.0) == 1.0


def test_expected_orders_start_at_zero_and_grow_with_horizon() -> None:
    horizons = np.linspace(0.0, 500.0, 51)
    for s in (0.606, 1.0, 1.0 + 1e-12, 3.0):
        params = ParetoNBDParams(0.553, 10.578, s, 11.669)
        curve = paretonbd.expected_orders(params, horizons, 3, 20.0, 30.0)
        assert curve[0] == 0.0
        assert np.all(np.diff(curve) > 0)
    # s = 1 is the removable singularity of the bracket over (s - 1).
    below, at_one, above = (
        float(paretonbd.expected_orders(ParetoNBDParams(0.5, 10.0, s, 12.0), 52.0, 3, 20.0, 30.0))
        for s in (1.0 - 1e-6, 1.0, 1.0 + 1e-6)
    )
    assert at_one == pytest.approx(0.5 * (below + above), rel=1e-10)


def test_time_unit_is_a_rescaling() -> None:
    assert DAILY.alpha == pytest.approx(7.0 * PUBLISHED.alpha)
    assert DAILY.beta == pytest.approx(7.0 * PUBLISHED.beta)
    assert (DAILY.r, DAILY.s) == (PUBLISHED.r, PUBLISHED.s)
    weekly = float(paretonbd.expected_orders(PUBLISHED, 52.0, 4, 20.0, 30.0))
    daily = float(paretonbd.expected_orders(DAILY, 364.0, 4, 140.0, 210.0))
    assert daily == pytest.approx(weekly, rel=1e-12)
    assert PUBLISHED.as_dict() == {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}


positive = st.floats(min_value=0.01, max_value=50.0)
scale = st.floats(min_value=0.01, max_value=1e4)


@settings(max_examples=300, deadline=None)
@given(
    r=positive,
    alpha=scale,
    s=positive,
    beta=scale,
    x=st.integers(min_value=0, max_value=5000),
    T=st.floats(min_value=0.0, max_value=50_000.0),
    share=st.floats(min_value=0.0, max_value=1.0),
    t=st.floats(min_value=0.0, max_value=3650.0),
)
def test_stable_over_wide_ranges(
    r: float, alpha: float, s: float, beta: float, x: int, T: float, share: float, t: float
) -> None:
    params = ParetoNBDParams(r, alpha, s, beta)
    t_x = T * share if x > 0 else 0.0
    ll = float(paretonbd.log_likelihood(params, x, t_x, T))
    assert math.isfinite(ll)
    assert ll <= 1e-12 or x > 0  # a probability, not a density, when x = 0
    alive = float(paretonbd.p_alive(params, x, t_x, T))
    assert 0.0 <= alive <= 1.0
    assert alive == pytest.approx(paretonbd.p_alive_scalar(params, x, t_x, T), rel=1e-12)
    curve = paretonbd.expected_orders(params, np.array([t, 2.0 * t]), x, t_x, T)
    assert np.all(np.isfinite(curve))
    assert 0.0 <= curve[0] <= curve[1]
    scalar = paretonbd.expected_orders_scalar(params, t, x, t_x, T)
    assert scalar == pytest.approx(float(curve[0]), rel=1e-12, abs=1e-300)


@pytest.fixture(scope="module")
def calibration() -> Summaries:
    return calibration_summaries(load_rows())


@pytest.fixture(scope="module")
def cdnow_weeks(calibration: Summaries) -> FitResult[ParetoNBDParams]:
    return paretonbd.fit(calibration.x, calibration.t_x / 7.0, calibration.T / 7.0)


def test_reproduces_published_cdnow_fit(cdnow_weeks: FitResult[ParetoNBDParams]) -> None:
    p = cdnow_weeks.params
    assert cdnow_weeks.converged
    assert cdnow_weeks.n == 2357
    for name in ("r", "alpha", "s", "beta"):
        assert getattr(p, name) == pytest.approx(getattr(PUBLISHED, name), rel=5e-3)
    assert cdnow_weeks.log_likelihood == pytest.approx(-9594.98, abs=0.05)


def test_cdnow_in_days_scales_alpha_and_beta_only(
    calibration: Summaries, cdnow_weeks: FitResult[ParetoNBDParams]
) -> None:
    days = paretonbd.fit(calibration.x, calibration.t_x, calibration.T)
    w, d = cdnow_weeks.params, days.params
    assert days.converged
    assert d.alpha == pytest.approx(7.0 * w.alpha, rel=1e-4)
    assert d.beta == pytest.approx(7.0 * w.beta, rel=1e-4)
    assert d.r == pytest.approx(w.r, rel=1e-4)
    assert d.s == pytest.approx(w.s, rel=1e-4)
    # Densities in the purchase times pick up a Jacobian of 1/7 per repeat purchase.
    shift = float(calibration.x.sum()) * math.log(7.0)
    assert days.log_likelihood == pytest.approx(cdnow_weeks.log_likelihood - shift, abs=1e-3)


def test_fit_recovers_simulated_parameters() -> None:
    truth = ParetoNBDParams(r=0.6, alpha=40.0, s=0.8, beta=120.0)
    rng = np.random.default_rng(19870101)
    T = rng.uniform(30.0, 400.0, 20_000)
    x, t_x = paretonbd.simulate(truth, T, rng)
    assert np.all(t_x <= T) and np.all((x > 0) | (t_x == 0))
    fit = paretonbd.fit(x, t_x, T)
    assert fit.converged
    for name in ("r", "alpha", "s", "beta"):
        assert getattr(fit.params, name) == pytest.approx(getattr(truth, name), rel=0.15)


def test_weights_equal_repeated_rows() -> None:
    rng = np.random.default_rng(11)
    T = np.round(rng.uniform(30.0, 300.0, 2000))
    x, t_x = paretonbd.simulate(DAILY, T, rng)
    counts = rng.integers(1, 4, len(T))
    weighted = paretonbd.fit(x, t_x, T, weights=counts)
    repeated = paretonbd.fit(np.repeat(x, counts), np.repeat(t_x, counts), np.repeat(T, counts))
    assert weighted.n == counts.sum()
    assert weighted.log_likelihood == pytest.approx(repeated.log_likelihood, rel=1e-9)
    assert weighted.params.s == pytest.approx(repeated.params.s, rel=1e-4)


def test_fit_rejects_inconsistent_summaries() -> None:
    with pytest.raises(ValueError, match="t_x"):
        paretonbd.fit([1.0], [5.0], [4.0])
    with pytest.raises(ValueError, match="t_x must be 0"):
        paretonbd.fit([0.0], [1.0], [4.0])
    with pytest.raises(ValueError, match="positive"):
        ParetoNBDParams(0.5, 1.0, 0.0, 1.0)
