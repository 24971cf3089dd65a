"""Shared mathematics of the beta-geometric family: BG/NBD and MBG/NBD.

Both models (Fader, Hardie & Lee 2005, "Counting your customers the easy way:
an alternative to the Pareto/NBD model", Marketing Science 24(2); Batislam,
Denizel & Filiztekin 2007, "Empirical validation and comparison of models for
customer base analysis", IJRM 24(3)) describe a customer by

* purchases that follow a Poisson process with rate lambda ~ Gamma(r, alpha)
  (alpha is a *rate*, so it carries the time unit: alpha_day = 7 alpha_week),
* a coin with dropout probability p ~ Beta(a, b) tossed after each repeat
  purchase (BG/NBD) or after every purchase including the first (MBG/NBD).

The only difference in every closed form is an offset ``m`` (0 for BG/NBD,
1 for MBG/NBD) in the beta-function arguments, so the formulas are written
once here with that offset and the public modules ``ltv.bgnbd`` and
``ltv.mbgnbd`` bind it through their parameter classes.

Numerical notes (a customer's whole history is valued, so x runs into the thousands
and T into tens of thousands of days):

* the likelihood is assembled in log-space with ``gammaln``/``betaln`` and the
  two-term sum with ``logaddexp`` (FHL 2005 eq. 6 overflows as written);
* P(alive) is a logistic function of a log-odds, never a ratio of powers;
* the conditional expectation (FHL 2005 eq. 10) multiplies
  ``((alpha+T)/(alpha+T+t))**(r+x)`` by ``2F1(r+x, b+x; a+b+x-1; z)``; for large
  x the first factor underflows and the second overflows. Euler's
  transformation ``2F1(A,B;C;z) = (1-z)**(C-A-B) 2F1(C-A, C-B; C; z)``
  (Abramowitz & Stegun 15.3.3) collapses the product to
  ``(1-z)**(a-1) 2F1(a+b-1+m-r, a-1; a+b+x-1+m; z)`` whose parameters stay
  small except C, which only speeds up the series.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Self, TypeVar

import numpy as np
from scipy.special import betaln, gammaln, hyp2f1

from ltv.fitting import (
    ArrayLike,
    FitResult,
    FloatArray,
    alive_from_log_odds,
    as_float_array,
    minimize_negative_log_likelihood,
    prepare_weights,
    validate_summaries,
)

# Two removable trouble spots of the closed form, both handled by evaluating
# on either side of the trouble point and interpolating linearly in the
# parameter (error O(step^2)):
# * a == 1: (bracket / (a - 1)) is 0/0 (near it, accuracy is ~1e-6 relative:
#   the bracket itself is a difference of two numbers close to 1);
# * r - a an integer: then C - A - B of the transformed 2F1 is an integer,
#   the degenerate case of the z -> 1 - z connection formula (A&S 15.3.10-12)
#   where scipy's hyp2f1 returns -inf or loses ~6 digits (scipy 1.17).
_A_ONE_STEP = 1e-5
_R_STEP = 1e-7


@dataclass(frozen=True, slots=True)
class BetaGeoParams:
    """Parameters (r, alpha, a, b); alpha is a rate per time unit of the fit."""

    r: float
    alpha: float
    a: float
    b: float

    # 0 for BG/NBD (dropout only after repeat purchases), 1 for MBG/NBD.
    offset: ClassVar[int] = 0

    def __post_init__(self) -> None:
        for name in ("r", "alpha", "a", "b"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive and finite, got {value!r}")

    def rescale_time(self, new_units_per_old_unit: float) -> Self:
        """Re-express the parameters for a finer/coarser time unit.

        The purchase rate lambda is per unit time, and lambda ~ Gamma(r, alpha)
        with alpha a rate parameter, so measuring time in units k times smaller
        (weeks -> days: k = 7) multiplies alpha by k and leaves r, a, b alone.
        """
        return type(self)(self.r, self.alpha * new_units_per_old_unit, self.a, self.b)

    def as_dict(self) -> dict[str, float]:
        """Plain mapping for the ``GET /model`` body (docs/http.md)."""
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}


PT = TypeVar("PT", bound=BetaGeoParams)


def log_likelihood(params: BetaGeoParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """Per-customer log-likelihood of (x, t_x, T).

    BG/NBD: FHL 2005 eq. 6; MBG/NBD: Batislam et al. 2007 eq. 3, i.e.

        L = B(a, b+x+m)/B(a,b) * G(r+x) alpha^r / (G(r) (alpha+T)^(r+x))
          + [x>0 or m=1] B(a+1, b+x-1+m)/B(a,b) * G(r+x) alpha^r / (G(r) (alpha+t_x)^(r+x))
    """
    return log_likelihood_rows(params.r, params.alpha, params.a, params.b, params.offset, x, t_x, T)


def log_likelihood_rows(
    r: float,
    alpha: ArrayLike,
    a: ArrayLike,
    b: ArrayLike,
    m: int,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
) -> FloatArray:
    """:func:`log_likelihood` with alpha, a and b given per customer (``m``: the
    model's offset). Covariate models (``ltv.covariates``) scale them by each
    customer's covariates; a fit evaluates the whole population in one call
    this way instead of one call per distinct covariate row."""
    xa, txa, Ta = as_float_array(x), as_float_array(t_x), as_float_array(T)
    alpha, a, b = as_float_array(alpha), as_float_array(a), as_float_array(b)
    common = gammaln(r + xa) - gammaln(r) + r * np.log(alpha) - betaln(a, b)
    alive = betaln(a, b + xa + m) - (r + xa) * np.log(alpha + Ta)
    has_dropout_term = (xa > 0) | (m == 1)
    # For BG/NBD at x = 0, b + x - 1 may be <= 0; evaluate at a safe x and mask.
    x_safe = np.where(has_dropout_term, xa, 1.0)
    dropped = betaln(a + 1.0, b + x_safe - 1.0 + m) - (r + xa) * np.log(alpha + txa)
    dropped = np.where(has_dropout_term, dropped, -np.inf)
    result: FloatArray = common + np.logaddexp(alive, dropped)
    return result


def p_alive(params: BetaGeoParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """P(customer still active at T | x, t_x, T).

    BG/NBD: FHL 2005 eq. 11 (exactly 1 at x = 0, why it does not value one-time buyers);
    MBG/NBD: Batislam et al. 2007 eq. 6. Computed as a logistic of the log-odds
    of having dropped out, ``log(a/(b+x-1+m)) + (r+x) log((alpha+T)/(alpha+t_x))``.
    """
    xa, txa, Ta = as_float_array(x), as_float_array(t_x), as_float_array(T)
    log_odds = _log_odds_dead(params, xa, txa, Ta)
    result: FloatArray = np.exp(-np.logaddexp(0.0, log_odds))
    return result


def _log_odds_dead(
    params: BetaGeoParams, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> FloatArray:
    r, alpha, a, b, m = params.r, params.alpha, params.a, params.b, params.offset
    has_dropout_term = (x > 0) | (m == 1)
    x_safe = np.where(has_dropout_term, x, 1.0)
    log_odds = np.log(a / (b + x_safe - 1.0 + m)) + (r + x) * (
        np.log(alpha + T) - np.log(alpha + t_x)
    )
    result: FloatArray = np.where(has_dropout_term, log_odds, -np.inf)
    return result


def expected_orders(
    params: BetaGeoParams, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray:
    """E[number of orders in (T, T+t] | x, t_x, T], broadcast over all arguments.

    BG/NBD: FHL 2005 eq. 10; MBG/NBD: Batislam et al. 2007 eq. 8; evaluated in
    the Euler-transformed form described in the module docstring:

        (a+b+x-1+m)/(a-1) * [1 - (1-z)^(a-1) 2F1(a+b-1+m-r, a-1; a+b+x-1+m; z)]
        * P(alive),   z = t / (alpha+T+t).
    """
    ta, xa, txa, Ta = (as_float_array(v) for v in (t, x, t_x, T))
    alive = p_alive(params, xa, txa, Ta)
    result: FloatArray = alive * _growth(params, xa, params.alpha + Ta, ta)
    return result


def _growth(params: BetaGeoParams, x: FloatArray, c: FloatArray, t: FloatArray) -> FloatArray:
    """Expected orders in (T, T+t] for an *alive* customer; c = alpha + T."""
    return _blend_a(params.r, params.a, params.b, params.offset, x, c, t)


def _sides(value: float, centre: float, step: float) -> tuple[float, float, float]:
    """(low, high, weight of high) bracketing a trouble point, or (value, value, 0)."""
    if abs(value - centre) < step:
        low, high = centre - step, centre + step
        return low, high, (value - low) / (high - low)
    return value, value, 0.0


def _blend_a(
    r: float, a: float, b: float, m: int, x: FloatArray, c: FloatArray, t: FloatArray
) -> FloatArray:
    low, high, weight = _sides(a, 1.0, _A_ONE_STEP)
    if low == high:
        return _blend_r(r, a, b, m, x, c, t)
    result: FloatArray = (1.0 - weight) * _blend_r(r, low, b, m, x, c, t) + weight * _blend_r(
        r, high, b, m, x, c, t
    )
    return result


def _blend_r(
    r: float, a: float, b: float, m: int, x: FloatArray, c: FloatArray, t: FloatArray
) -> FloatArray:
    low, high, weight = _sides(r, a + round(r - a), _R_STEP * max(1.0, r))
    if low == high:
        return _growth_at(r, a, b, m, x, c, t)
    result: FloatArray = (1.0 - weight) * _growth_at(low, a, b, m, x, c, t) + weight * _growth_at(
        high, a, b, m, x, c, t
    )
    return result


def _growth_at(
    r: float, a: float, b: float, m: int, x: FloatArray, c: FloatArray, t: FloatArray
) -> FloatArray:
    z = t / (c + t)
    log_one_minus_z = np.log(c) - np.log(c + t)
    hyper = hyp2f1(a + b - 1.0 + m - r, a - 1.0, a + b + x - 1.0 + m, z)
    bracket = 1.0 - np.exp((a - 1.0) * log_one_minus_z) * hyper
    result: FloatArray = (a + b + x - 1.0 + m) / (a - 1.0) * bracket
    return result


def p_alive_scalar(params: BetaGeoParams, x: float, t_x: float, T: float) -> float:
    """Scalar fast path of :func:`p_alive` for the stream (plain floats, no arrays)."""
    m = params.offset
    if x <= 0 and m == 0:
        return 1.0
    log_odds = math.log(params.a / (params.b + x - 1.0 + m)) + (params.r + x) * (
        math.log(params.alpha + T) - math.log(params.alpha + t_x)
    )
    return alive_from_log_odds(log_odds)


def expected_orders_scalar(
    params: BetaGeoParams, t: float, x: float, t_x: float, T: float
) -> float:
    """Scalar fast path of :func:`expected_orders`."""
    growth = float(growth_curve(params, x, T, t))
    return p_alive_scalar(params, x, t_x, T) * growth


def growth_curve(params: BetaGeoParams, x: ArrayLike, T: ArrayLike, t: ArrayLike) -> FloatArray:
    """Expected orders over (T, T+t] of a customer known to be alive, broadcast.

    :func:`expected_orders` is this times P(alive); the discounted-CLV
    quadrature in :mod:`ltv.clv` needs the curve at all its nodes in one
    vectorised ``hyp2f1`` call.
    """
    Ta = as_float_array(T)
    return _growth(params, as_float_array(x), params.alpha + Ta, as_float_array(t))


def simulate(
    params: BetaGeoParams, T: ArrayLike, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Draw (x, t_x) for customers observed for T time units, from the model itself.

    Generative story (FHL 2005 section 3): lambda ~ Gamma(r, alpha),
    p ~ Beta(a, b); the number of repeat purchases made before dropping out is
    K ~ Geometric(p) on {1, 2, ...} for BG/NBD and on {0, 1, ...} for MBG/NBD
    (coin also tossed at the first purchase). With N ~ Poisson(lambda T) the
    purchases an immortal customer would make in (0, T], x = min(N, K), and
    the x-th of N uniform arrival times is T * Beta(x, N - x + 1).
    Used to benchmark fits at scale and to check parameter recovery.
    """
    Ta = as_float_array(T)
    shape = Ta.shape
    lam = rng.gamma(params.r, 1.0 / params.alpha, shape)
    p = rng.beta(params.a, params.b, shape)
    n = rng.poisson(lam * Ta)
    k = rng.geometric(p) - params.offset
    x = np.minimum(n, k)
    has_repeat = x > 0
    share = rng.beta(np.where(has_repeat, x, 1), n - x + 1)
    t_x = np.where(has_repeat, Ta * share, 0.0)
    return x.astype(np.float64), t_x


def fit_beta_geo(
    params_type: type[PT],
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    weights: ArrayLike | None = None,
) -> FitResult[PT]:
    """Maximum-likelihood fit of ``params_type`` to customer summaries.

    Time may be in any unit; the fitted alpha is per that unit. Starting point:
    r = 1 and alpha matching the pooled purchase rate (mean x / mean T), a = b = 1
    (uniform dropout prior), which lies in the basin of the CDNOW optimum for
    both time units.
    """
    xa, txa, Ta = as_float_array(x), as_float_array(t_x), as_float_array(T)
    validate_summaries(xa, txa, Ta)
    w = prepare_weights(weights, xa.shape)
    total_weight = float(w.sum())
    mean_x = float(np.average(xa, weights=w)) if total_weight > 0 else 0.0
    mean_T = float(np.average(Ta, weights=w)) if total_weight > 0 else 1.0
    alpha0 = max(mean_T, 1e-9) / max(mean_x, 1e-3)

    def total(p: FloatArray) -> float:
        candidate = params_type(float(p[0]), float(p[1]), float(p[2]), float(p[3]))
        return float(np.dot(w, log_likelihood(candidate, xa, txa, Ta)))

    best, ll, converged, iterations = minimize_negative_log_likelihood(
        total, np.array([1.0, alpha0, 1.0, 1.0]), total_weight
    )
    fitted = params_type(float(best[0]), float(best[1]), float(best[2]), float(best[3]))
    return FitResult(fitted, ll, converged, iterations, total_weight)
