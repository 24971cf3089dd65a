"""Shifted-beta-geometric (sBG) retention model for subscriptions.

Fader & Hardie 2007, "How to project customer retention", Journal of
Interactive Marketing 21(1); residual value from Fader & Hardie 2010,
"Customer-base valuation in a contractual setting: the perils of ignoring
heterogeneity", Marketing Science 29(1).

Why model retention rather than use one churn rate: at each renewal a
subscriber leaves with their own probability theta, constant over time, and
theta varies across subscribers as Beta(gamma, delta). The subscribers most
likely to leave go first, so the retention rate of the survivors rises with
tenure even though nobody's own theta changes. The seed formula
ARPU x margin / churn (``ltv.formulas.subscription_ltv``) applies one pooled
churn rate at every tenure, so it cannot tell a subscriber who has renewed
for three years from one in their first month; FH 2010 show that ignoring
this heterogeneity undervalues the existing subscriber base.

Time is counted in renewal periods (month, year: whatever the plan bills).
T is the period in which a subscriber is lost (T = 1: never renewed); a
subscriber who has renewed n times and is still active has T > n. The
closed forms (FH 2007) follow from the recursions P(T=1) = gamma/(gamma+delta),
P(T=t) = (delta+t-2)/(gamma+delta+t-1) P(T=t-1) and
S(t) = S(t-1) (delta+t-1)/(gamma+delta+t-1), S(0) = 1:

    S(t)     = B(gamma, delta+t) / B(gamma, delta)
    P(T = t) = B(gamma+1, delta+t-1) / B(gamma, delta) = S(t-1) - S(t)
    r_t      = S(t) / S(t-1) = (delta+t-1) / (gamma+delta+t-1)

They are evaluated as log-beta differences: the gamma functions themselves
overflow beyond t ~ 170 and the products of the recursions underflow, while
``betaln`` stays within about 2e-10 (relative, in S) at t = 1e5 periods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import betaln

from ltv.fitting import (
    ArrayLike,
    FitResult,
    FloatArray,
    as_float_array,
    minimize_negative_log_likelihood,
    prepare_weights,
)

# Relative change of the continued fraction's value at which it has converged.
_CF_TOLERANCE = 1e-15
# The fraction needs about 9 / sqrt(d) steps for d the discount rate (see
# _hyp2f1_unit_a); this many per 1 / sqrt(d), plus a floor, is a wide margin.
_CF_STEPS_PER_ROOT = 40.0
_CF_MIN_STEPS = 200
_TINY = 1e-300


@dataclass(frozen=True, slots=True)
class SBGParams:
    """Beta(gamma, delta) distribution of the per-period churn probability theta.

    The mean churn probability at acquisition is gamma / (gamma + delta);
    gamma + delta measures how alike subscribers are (large: nearly the
    same theta for everyone, i.e. the constant-churn model).
    """

    gamma: float
    delta: float

    def __post_init__(self) -> None:
        for name in ("gamma", "delta"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive and finite, got {value!r}")

    def as_dict(self) -> dict[str, float]:
        """Plain mapping, the shape the fit job stores for every model (``FittedModel``)."""
        return {"gamma": self.gamma, "delta": self.delta}


def survival(params: SBGParams, t: ArrayLike) -> FloatArray:
    """S(t) = P(T > t): share of a cohort still subscribed after t renewals (t >= 0)."""
    ta = _periods(t, "t", minimum=0)
    result: FloatArray = np.exp(_log_survival(params, ta))
    return result


def lifetime_probability(params: SBGParams, t: ArrayLike) -> FloatArray:
    """P(T = t): share of a cohort lost in period t, i.e. after t - 1 renewals (t >= 1)."""
    ta = _periods(t, "t", minimum=1)
    result: FloatArray = np.exp(_log_survival(params, ta - 1.0) + _log_churn_share(params, ta))
    return result


def retention_rate(params: SBGParams, t: ArrayLike) -> FloatArray:
    """r_t = S(t) / S(t-1): share of those active in period t who renew into period t + 1.

    It rises towards 1 with t whenever there is heterogeneity, which is the
    pattern a constant churn rate cannot show.
    """
    ta = _periods(t, "t", minimum=1)
    result: FloatArray = (params.delta + ta - 1.0) / (params.gamma + params.delta + ta - 1.0)
    return result


def log_likelihood(
    params: SBGParams,
    renewals: ArrayLike,
    active: ArrayLike,
    weights: ArrayLike | None = None,
) -> float:
    """Total log-likelihood of subscribers' (renewals so far, still active).

    A subscriber still active after n renewals contributes S(n) (right
    censored); one who ended after n renewals was lost in period n + 1 and
    contributes P(T = n + 1). ``weights`` count identical subscribers. This
    is the form the service has: per subscriber the renewals and whether the
    subscription ended, each observed for however long they have been around.
    """
    periods, ended_w, active_w = _tally(renewals, active, weights)
    return _table_log_likelihood(params, periods, ended_w, active_w)


def cohort_log_likelihood(params: SBGParams, alive: ArrayLike, weight: float = 1.0) -> float:
    """Log-likelihood of one cohort's survivor counts, as fitted in FH 2007.

    ``alive[t]`` is the number still subscribed at the start of period t,
    t = 0..k (``alive[0]`` the cohort size). The ``alive[t-1] - alive[t]``
    lost in period t contribute P(T = t) each and the ``alive[k]`` survivors
    S(k). ``weight`` multiplies every count, e.g. 3.5 for figures given per
    1 000 of a cohort of 3 500: the fitted parameters do not change, the
    log-likelihood and the curvature behind any confidence interval do.
    """
    periods, ended_w, active_w = _cohort_table(alive, weight)
    return _table_log_likelihood(params, periods, ended_w, active_w)


def fit(
    renewals: ArrayLike, active: ArrayLike, weights: ArrayLike | None = None
) -> FitResult[SBGParams]:
    """MLE of (gamma, delta) from individual subscribers (see :func:`log_likelihood`).

    Subscribers are first tallied by renewal count, so one likelihood
    evaluation costs as much as the number of distinct counts, not of
    subscribers. Two degenerate populations have no interior maximum:
    when nobody has ended, theta -> 0 and the fit stops at the driver's
    bound (gamma ~ 2e-9) reporting convergence, so a caller should require
    some ended subscriptions; when the data show no heterogeneity, gamma
    and delta run off together towards the constant-churn limit and
    ``converged`` is usually False.
    """
    return _fit_table(*_tally(renewals, active, weights))


def fit_cohort(alive: ArrayLike, weight: float = 1.0) -> FitResult[SBGParams]:
    """MLE of (gamma, delta) from one cohort's survivor counts (:func:`cohort_log_likelihood`)."""
    return _fit_table(*_cohort_table(alive, weight))


def derl(params: SBGParams, renewals: ArrayLike, discount_rate: ArrayLike) -> FloatArray:
    """Discounted expected residual lifetime of a subscriber active after ``renewals`` renewals.

    The expected number of future payments, each discounted by
    (1 + d)^-k for a payment k periods after the next one, counted just
    before the next renewal decision (FH 2010, who write it for a customer
    who has made n - 1 renewals):

        DERL(d | n) = sum_{t > n} S(t)/S(n) (1+d)^-(t-n-1)
                    = (delta+n)/(gamma+delta+n) 2F1(1, delta+n+1; gamma+delta+n+1; 1/(1+d))

    The payments of the current period are not included. ``discount_rate``
    is per renewal period (monthly plans: (1 + annual)^(1/12) - 1). At
    d = 0 it is the expected number of renewals still to come, (delta+n)/(gamma-1)
    when gamma > 1 and infinite otherwise (the lifetime has no mean).
    Cost grows as 1/sqrt(d): about 100 steps at d = 0.8 %, 800 at 0.01 %.
    """
    n_all, d_all = np.broadcast_arrays(
        _periods(renewals, "renewals", minimum=0), as_float_array(discount_rate)
    )
    if not np.all(np.isfinite(d_all)) or np.any(d_all < 0):
        raise ValueError("discount_rate must be finite and >= 0")
    g, dl = params.gamma, params.delta
    discounted = d_all > 0
    # At d = 0 the fraction would sit on its branch point z = 1: use the limit instead.
    z = np.where(discounted, 1.0 / (1.0 + d_all), 0.5)
    hyper = _hyp2f1_unit_a(dl + n_all + 1.0, g + dl + n_all + 1.0, z)
    retained = (dl + n_all) / (g + dl + n_all)
    undiscounted = (dl + n_all) / (g - 1.0) if g > 1.0 else np.full_like(n_all, np.inf)
    result: FloatArray = np.where(discounted, retained * hyper, undiscounted)
    return result


def expected_residual_value(
    params: SBGParams,
    renewals: ArrayLike,
    discount_rate: ArrayLike,
    charge: ArrayLike,
    margin: ArrayLike,
) -> FloatArray:
    """Expected value still to come from an active subscriber: DERL x charge x margin.

    ``charge`` is the amount billed per renewal period, ``margin`` the share
    of it kept (1 on a revenue basis); FH 2010's E(RLV) with a constant
    cash flow per period.
    """
    result: FloatArray = (
        derl(params, renewals, discount_rate) * as_float_array(charge) * as_float_array(margin)
    )
    return result


def _log_survival(params: SBGParams, t: FloatArray) -> FloatArray:
    result: FloatArray = betaln(params.gamma, params.delta + t) - betaln(params.gamma, params.delta)
    return result


def _log_churn_share(params: SBGParams, t: FloatArray) -> FloatArray:
    """log(1 - r_t) = log P(T = t | T > t - 1): the lost share of those active in period t."""
    result: FloatArray = np.log(params.gamma) - np.log(params.gamma + params.delta + t - 1.0)
    return result


def _table_log_likelihood(
    params: SBGParams, periods: FloatArray, ended_w: FloatArray, active_w: FloatArray
) -> float:
    """Sum over distinct renewal counts n of w_active log S(n) + w_ended log P(T = n + 1).

    log P(T = n + 1) = log S(n) + log(1 - r_{n+1}): one log-beta per row.
    """
    log_s = _log_survival(params, periods)
    lost = log_s + _log_churn_share(params, periods + 1.0)
    return float(np.dot(active_w, log_s) + np.dot(ended_w, lost))


def _fit_table(
    periods: FloatArray, ended_w: FloatArray, active_w: FloatArray
) -> FitResult[SBGParams]:
    """Start from gamma = delta = 1 (theta uniform): the data move it within a few steps."""
    total_weight = float(ended_w.sum() + active_w.sum())

    def total(p: FloatArray) -> float:
        return _table_log_likelihood(
            SBGParams(float(p[0]), float(p[1])), periods, ended_w, active_w
        )

    best, ll, converged, iterations = minimize_negative_log_likelihood(
        total, np.array([1.0, 1.0]), total_weight
    )
    return FitResult(
        SBGParams(float(best[0]), float(best[1])), ll, converged, iterations, total_weight
    )


def _tally(
    renewals: ArrayLike, active: ArrayLike, weights: ArrayLike | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(distinct renewal counts, weight ended after each, weight active after each)."""
    n = _periods(renewals, "renewals", minimum=0)
    still: npt.NDArray[np.bool_] = np.asarray(active, dtype=np.bool_)
    if still.shape != n.shape:
        raise ValueError("renewals and active must have the same shape")
    w = prepare_weights(weights, n.shape)
    periods, index = np.unique(n, return_inverse=True)
    index = index.reshape(-1)
    flat_w, flat_still = w.reshape(-1), still.reshape(-1)
    size = len(periods)
    active_w = np.bincount(index, weights=np.where(flat_still, flat_w, 0.0), minlength=size)
    ended_w = np.bincount(index, weights=np.where(flat_still, 0.0, flat_w), minlength=size)
    return periods, ended_w.astype(np.float64, copy=False), active_w.astype(np.float64, copy=False)


def _cohort_table(alive: ArrayLike, weight: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    counts = as_float_array(alive)
    if counts.ndim != 1 or len(counts) < 2:
        raise ValueError("alive must list the survivors at the start of periods 0..k, k >= 1")
    if not np.all(np.isfinite(counts)) or counts[0] <= 0 or np.any(counts < 0):
        raise ValueError("alive must be finite and non-negative, with alive[0] > 0")
    lost = -np.diff(counts)
    if np.any(lost < 0):
        raise ValueError("alive must not increase: a cohort only loses subscribers")
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"weight must be positive and finite, got {weight!r}")
    k = len(counts) - 1
    periods = np.arange(k + 1, dtype=np.float64)
    ended_w = weight * np.append(lost, 0.0)
    active_w = np.zeros(k + 1)
    active_w[k] = weight * counts[k]
    return periods, ended_w, active_w


def _periods(values: ArrayLike, name: str, *, minimum: int) -> FloatArray:
    """Whole numbers of periods as floats; anything else is a caller's mistake, not data."""
    a = as_float_array(values)
    if not np.all(np.isfinite(a)) or np.any(a < minimum) or np.any(a != np.floor(a)):
        raise ValueError(f"{name} must be whole numbers >= {minimum}")
    return a


def _hyp2f1_unit_a(b: FloatArray, c: FloatArray, z: FloatArray) -> FloatArray:
    """2F1(1, b; c; z) for c > b > 0 and 0 <= z < 1, by Gauss's continued fraction.

    scipy's ``hyp2f1`` cannot be used for DERL (scipy 1.17): it returns NaN
    for 1 000 renewals at d = 1e-4 whatever gamma, and at d = 0.1 when
    gamma = 1, 2 or 5; at gamma = 1, where c - a - b = gamma - 1 is an
    integer, it is 25 % off for one renewal at d = 1e-4. With a = 1 the
    function equals the continued fraction of the incomplete beta function
    B_z(c-1, b-c+1) with its prefactor cancelled:

        2F1(1, b; c; z) = 1 / (1 + e1 / (1 + e2 / (1 + ...))),
        e1 = -b z / c,
        e_{2m}   = -m (c-b+m-1) z / ((c+2m-2)(c+2m-1)),
        e_{2m+1} = -(b+m)(c+m-1) z / ((c+2m-1)(c+2m)),

    which converges on the whole cut plane, so no parameter value is
    special. Its convergents are Pade approximants of a Stieltjes function
    whose pole sits at 1/z = 1 + d, so the error falls by about
    1 - 4 sqrt(d) per step: ~9 / sqrt(d) steps reach double precision.
    Evaluated by the modified Lentz method, elementwise, each element
    frozen once its value stops changing.
    """
    shape = np.broadcast_shapes(b.shape, c.shape, z.shape)
    b, c, z = (np.broadcast_to(v, shape) for v in (b, c, z))
    gap = float(np.min(1.0 - z)) if z.size else 1.0
    limit = _CF_MIN_STEPS + int(_CF_STEPS_PER_ROOT / math.sqrt(gap))
    # Lentz's start for 0 + 1 / (1 + e1 / ...): after the first two levels.
    lower = 1.0 / _nonzero(1.0 - b * z / c)
    upper = np.ones(shape)
    value = lower.copy()
    done = np.zeros(shape, dtype=np.bool_)
    for m in range(1, limit + 1):
        even = -m * (c - b + m - 1.0) * z / ((c + 2 * m - 2.0) * (c + 2 * m - 1.0))
        odd = -(b + m) * (c + m - 1.0) * z / ((c + 2 * m - 1.0) * (c + 2 * m))
        step = np.ones(shape)
        for e in (even, odd):
            lower = 1.0 / _nonzero(1.0 + e * lower)
            upper = _nonzero(1.0 + e / upper)
            step = step * lower * upper
        value = np.where(done, value, value * step)
        done |= np.abs(step - 1.0) < _CF_TOLERANCE
        if done.all():
            return value
    raise ArithmeticError("2F1 continued fraction did not converge")


def _nonzero(values: FloatArray) -> FloatArray:
    """Lentz's guard: a denominator that is exactly 0 becomes tiny instead of dividing by 0."""
    result: FloatArray = np.where(np.abs(values) < _TINY, _TINY, values)
    return result
