"""Pareto/NBD model (Schmittlein, Morrison & Colombo 1987, "Counting your customers:
who are they and what will they do next?", Management Science 33(1); expressions as
derived in Fader & Hardie 2005, "A note on deriving the Pareto/NBD model and related
expressions", brucehardie.com note 009).

A customer buys, while alive, at Poisson rate lambda and stays alive for an
exponential lifetime of rate mu, with lambda ~ Gamma(r, alpha) and
mu ~ Gamma(s, beta) independent across customers. Unlike BG/NBD, dropout can
happen at any moment, not only after a repeat purchase, so a silent one-time
buyer loses P(alive) with age, as under MBG/NBD. Both alpha and beta are rates
per time unit, so they carry the unit of the data fitted (days in the service,
weeks for the published CDNOW figures).

Integrating the individual likelihood over (lambda, mu) leaves one integral over
the moment y at which the customer may have died, between t_x and T:

    L = G(r+x) alpha^r beta^s / G(r) * [ (alpha+T)^-(r+x) (beta+T)^-s
                                         + s/(r+s+x) * (A(t_x) - A(T)) ],
    A(y) = (r+s+x) * integral_y^inf (alpha+u)^-(r+x) (beta+u)^-(s+1) du.

A(y) is the Gaussian hypergeometric function of the paper: with k = r+s+x,
``2F1(k, s+1; k+1; (alpha-beta)/(alpha+y)) / (alpha+y)^k`` when alpha >= beta and
``2F1(k, r+x; k+1; (beta-alpha)/(beta+y)) / (beta+y)^k`` otherwise, the choice
that keeps the argument in [0, 1). As printed, the second form overflows for
frequent buyers (the 2F1 grows like ((beta+y)/(alpha+y))^(r+x) while the power
underflows), so both are taken through Euler's transformation (Abramowitz &
Stegun 15.3.3) to

    alpha >= beta: A = (alpha+y)^-(r+x) (beta+y)^-s     h(r+x, s+1, z),
    alpha <  beta: A = (alpha+y)^-(r+x-1) (beta+y)^-(s+1) h(s+1, r+x, z),
    h(b, q, z) = 2F1(1, b; b+q; z),   z = |alpha-beta| / (max(alpha, beta) + y),

and the powers are combined in log space. The series of h has positive terms
(no cancellation) and h lies between 1 and 1/(1-z); alpha == beta is z = 0,
h = 1, with no special case.

scipy's ``hyp2f1`` sums that power series for z <= 0.9 (a few ulp from
high-precision values, integer q included); above, it switches to the z -> 1-z
connection formulas, which are degenerate when q is an integer (NaN, or half the
digits lost next to one) and give NaN for large b (scipy 1.17). Such z occur
when y is small next to |alpha-beta|: one-time buyers (t_x = 0) once alpha and
beta differ tenfold, as when a population shows little dropout and beta grows.
There h comes from its integral form
h = k * integral_0^inf (1+tau)^-q (1+eps tau)^-b dtau, k = b+q-1, eps = 1-z:
the part beyond eps tau = 1/9 is, after an exact change of variables, h at
z = 0.9 again, and the rest is a finite integral done by Gauss-Legendre (see
:func:`_log_h_near_one`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Self

import numpy as np
from scipy.special import gammaln, hyp2f1

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

__all__ = [
    "ParetoNBDParams",
    "expected_orders",
    "expected_orders_scalar",
    "fit",
    "growth_curve",
    "log_likelihood",
    "p_alive",
    "p_alive_scalar",
    "simulate",
]

# Largest argument handed to scipy's hyp2f1 (its power-series range).
_Z_SERIES = 0.9
# Above it: Gauss-Legendre nodes per panel of the head integral, and how many
# e-folds below its peak the integrand is cut off (e^-50 ~ 2e-22).
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(32)
_UNIT_NODES: FloatArray = 0.5 * (_NODES + 1.0)
_UNIT_WEIGHTS: FloatArray = 0.5 * _WEIGHTS
_CUT_E_FOLDS = 50.0
# Width (in w) of the panel at the cut-off, where the integrand falls steeply.
_STEEP_PANEL = 4.0


@dataclass(frozen=True, slots=True)
class ParetoNBDParams:
    """Parameters (r, alpha, s, beta); alpha and beta are rates per time unit of the fit."""

    r: float
    alpha: float
    s: float
    beta: float

    def __post_init__(self) -> None:
        for name in ("r", "alpha", "s", "beta"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive and finite, got {value!r}")

    def rescale_time(self, new_units_per_old_unit: float) -> Self:
        """Re-express the parameters for a finer/coarser time unit.

        lambda and mu are both per unit time and have gamma priors with rate
        parameters alpha and beta, so measuring time in units k times smaller
        (weeks -> days: k = 7) multiplies alpha and beta by k and leaves r, s alone.
        """
        k = new_units_per_old_unit
        return type(self)(self.r, self.alpha * k, self.s, self.beta * k)

    def as_dict(self) -> dict[str, float]:
        """Plain mapping, as the other models give for the ``GET /model`` body (docs/http.md)."""
        return {"r": self.r, "alpha": self.alpha, "s": self.s, "beta": self.beta}


def log_likelihood(
    params: ParetoNBDParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray:
    """Per-customer log-likelihood of (x, t_x, T), the formula of the module docstring."""
    return log_likelihood_rows(params.r, params.alpha, params.s, params.beta, x, t_x, T)


def log_likelihood_rows(
    r: float,
    alpha: ArrayLike,
    s: float,
    beta: ArrayLike,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
) -> FloatArray:
    """:func:`log_likelihood` with the rates alpha and beta given per customer.

    Covariate models (``ltv.covariates``) scale the rates by each customer's
    covariates; a fit evaluates the whole population in one call this way
    instead of one call per distinct covariate row.
    """
    xa, txa, Ta = as_float_array(x), as_float_array(t_x), as_float_array(T)
    aa, ba = as_float_array(alpha), as_float_array(beta)
    common = gammaln(r + xa) - gammaln(r) + r * np.log(aa) + s * np.log(ba)
    alive, dead = _log_terms(r, aa, s, ba, xa, txa, Ta)
    result: FloatArray = common + np.logaddexp(alive, dead)
    return result


def p_alive(params: ParetoNBDParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """P(customer still active at T | x, t_x, T).

    The likelihood's first term is the probability of the history with the
    customer alive at T, so P(alive) is that term over the sum: a logistic of
    the log-odds ``dead - alive`` of the two terms, never a ratio of powers.
    """
    xa, txa, Ta = as_float_array(x), as_float_array(t_x), as_float_array(T)
    alpha, beta = as_float_array(params.alpha), as_float_array(params.beta)
    alive, dead = _log_terms(params.r, alpha, params.s, beta, xa, txa, Ta)
    result: FloatArray = np.exp(-np.logaddexp(0.0, dead - alive))
    return result


def p_alive_scalar(params: ParetoNBDParams, x: float, t_x: float, T: float) -> float:
    """Scalar path of :func:`p_alive` for one customer (plain floats, no arrays)."""
    alive, dead = _log_terms_scalar(params, x, t_x, T)
    log_odds = dead - alive
    return alive_from_log_odds(log_odds)


def expected_orders(
    params: ParetoNBDParams, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray:
    """E[number of orders in (T, T+t] | x, t_x, T], broadcast over all arguments.

    Given alive at T, lambda ~ Gamma(r+x, alpha+T) and mu ~ Gamma(s, beta+T)
    independently, and an alive customer's expected orders over t are
    (lambda/mu)(1 - e^(-mu t)); averaging gives

        (r+x)/(alpha+T) * (beta+T)/(s-1) * [1 - ((beta+T)/(beta+T+t))^(s-1)] * P(alive),

    whose bracket over (s-1) is evaluated as expm1(...)/(s-1), with its limit
    (beta+T) log(1 + t/(beta+T)) at s = 1.
    """
    ta, xa, txa, Ta = (as_float_array(v) for v in (t, x, t_x, T))
    growth = _growth(params, xa, Ta, ta)
    result: FloatArray = p_alive(params, xa, txa, Ta) * growth
    return result


def expected_orders_scalar(
    params: ParetoNBDParams, t: float, x: float, t_x: float, T: float
) -> float:
    """Scalar path of :func:`expected_orders`."""
    c = params.beta + T
    a = params.s - 1.0
    log_ratio = math.log1p(t / c)
    if abs(a * log_ratio) < 1e-8:
        horizon = log_ratio * (1.0 - 0.5 * a * log_ratio)
    else:
        horizon = -math.expm1(-a * log_ratio) / a
    growth = (params.r + x) / (params.alpha + T) * c * horizon
    return p_alive_scalar(params, x, t_x, T) * growth


def growth_curve(params: ParetoNBDParams, x: ArrayLike, T: ArrayLike, t: ArrayLike) -> FloatArray:
    """Expected orders over (T, T+t] of a customer known to be alive at T, broadcast
    (:func:`expected_orders` without P(alive); what the discounted CLV integrates)."""
    return _growth(params, as_float_array(x), as_float_array(T), as_float_array(t))


def _growth(params: ParetoNBDParams, x: FloatArray, T: FloatArray, t: FloatArray) -> FloatArray:
    """Expected orders over (T, T+t] of a customer known to be alive at T."""
    c = params.beta + T
    a = params.s - 1.0
    log_ratio = np.log1p(t / c)
    product = a * log_ratio
    # -expm1(-a L)/a -> L as a -> 0; second order is exact to ~1e-16 there.
    small = np.abs(product) < 1e-8
    safe_a = a if a != 0.0 else 1.0
    horizon = np.where(small, log_ratio * (1.0 - 0.5 * product), -np.expm1(-product) / safe_a)
    result: FloatArray = (params.r + x) / (params.alpha + T) * c * horizon
    return result


def _log_terms(
    r: float,
    alpha: FloatArray,
    s: float,
    beta: FloatArray,
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Logs of the likelihood's two terms without their common factor: (alive at T, died).

    alpha and beta: one value for everyone or one per customer (broadcast).
    """
    alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    at_last = _log_a(r, alpha, s, beta, x, t_x)
    at_end = _log_a(r, alpha, s, beta, x, T)
    # A decreases in y; rounding must not make A(t_x) - A(T) negative. At
    # t_x = T the customer bought at T, cannot have died before: log 0 = -inf.
    gap = np.minimum(at_end - at_last, 0.0)
    with np.errstate(divide="ignore"):
        dead = math.log(s) - np.log(r + s + x) + at_last + np.log(-np.expm1(gap))
    return alive, dead


def _log_terms_scalar(
    params: ParetoNBDParams, x: float, t_x: float, T: float
) -> tuple[float, float]:
    r, alpha, s, beta = params.r, params.alpha, params.s, params.beta
    alive = -(r + x) * math.log(alpha + T) - s * math.log(beta + T)
    at_last = _log_a_scalar(params, x, t_x)
    at_end = _log_a_scalar(params, x, T)
    gap = min(at_end - at_last, 0.0)
    if gap == 0.0:
        return alive, -math.inf
    dead = math.log(s) - math.log(r + s + x) + at_last + math.log(-math.expm1(gap))
    return alive, dead


def _log_a(
    r: float, alpha: FloatArray, s: float, beta: FloatArray, x: FloatArray, y: FloatArray
) -> FloatArray:
    """log A(y) in the Euler-transformed form of the module docstring, broadcast
    (alpha and beta too: which form applies is decided per customer)."""
    low, high = np.minimum(alpha, beta), np.maximum(alpha, beta)
    big = high + y
    z = (high - low) / big
    eps = (low + y) / big
    first = np.broadcast_to(alpha >= beta, np.broadcast(x, y, alpha, beta).shape)
    x_b, z_b, eps_b = np.broadcast_arrays(x, z, eps)
    x_b, z_b, eps_b = (np.broadcast_to(v, first.shape) for v in (x_b, z_b, eps_b))
    b = np.where(first, r + x_b, s + 1.0)
    q = np.where(first, s + 1.0, r + x_b)
    power = np.where(
        first,
        -(r + x) * np.log(alpha + y) - s * np.log(beta + y),
        -(r + x - 1.0) * np.log(alpha + y) - (s + 1.0) * np.log(beta + y),
    )
    result: FloatArray = power + _log_h(b, q, z_b, eps_b)
    return result


def _log_a_scalar(params: ParetoNBDParams, x: float, y: float) -> float:
    r, alpha, s, beta = params.r, params.alpha, params.s, params.beta
    low, high = min(alpha, beta), max(alpha, beta)
    z = (high - low) / (high + y)
    eps = (low + y) / (high + y)
    if alpha >= beta:
        b, q = r + x, s + 1.0
        power = -(r + x) * math.log(alpha + y) - s * math.log(beta + y)
    else:
        b, q = s + 1.0, r + x
        power = -(r + x - 1.0) * math.log(alpha + y) - (s + 1.0) * math.log(beta + y)
    if z <= _Z_SERIES:
        return power + math.log(float(hyp2f1(1.0, b, b + q, z)))
    near = _log_h_near_one(np.array([b]), np.array([q]), np.array([eps]))
    return power + float(near[0])


def _log_h(b: FloatArray, q: FloatArray, z: FloatArray, eps: FloatArray) -> FloatArray:
    """log 2F1(1, b; b+q; z) for z in [0, 1); eps = 1 - z, computed without cancellation."""
    series = z <= _Z_SERIES
    result = np.empty(z.shape)
    result[series] = np.log(hyp2f1(1.0, b[series], b[series] + q[series], z[series]))
    near = ~series
    if np.any(near):
        result[near] = _log_h_near_one(b[near], q[near], eps[near])
    return result


def _log_h_near_one(b: FloatArray, q: FloatArray, eps: FloatArray) -> FloatArray:
    """log 2F1(1, b; b+q; 1-eps) for 0 < eps < 1 - 0.9, from the integral representation.

    h = k I with I = integral_0^inf (1+tau)^-q (1+eps tau)^-b dtau and k = b+q-1
    (the mixing integral A(y) rescaled by the smaller of alpha+y, beta+y). Split
    at tau_1 with 1 + tau_1 = (1-eps)/(9 eps): substituting
    tau = tau_1 + (1+tau_1) sigma maps the tail onto the same integral with
    eps' = 1/10, so

        tail = (1+tau_1)^(1-q) (1+eps tau_1)^-b h(b, q, 0.9) / k,

    exact, with h(b, q, 0.9) from the power series. The head, in w = log(1+tau)
    on [0, W], W = log(1+tau_1), has the integrand exp((1-q) w) (1 + eps(e^w-1))^-b,
    analytic except at w = log(1/eps - 1) +- i pi, 2.2 beyond W: Gauss-Legendre
    converges geometrically. It is cut where the integrand has surely fallen by
    e^-50 (the (1-q)w term alone for q > 1, or b*eps*(e^w-1) = 50 when b is
    large), so that steep decay does not need more nodes, and the last 4 units
    before the cut get their own panel, where the double-exponential fall-off of
    the second factor is. Relative error below 3e-13 against 80-digit arithmetic
    over b in [0.01, 1e4], q in [0.01, 1e3] (integers included), eps down to 1e-17;
    32 nodes per panel are needed for that, 24 leave 1e-10.
    """
    k = b + q - 1.0
    width = np.log1p(-eps) - np.log(9.0 * eps)
    log_tail = (
        (1.0 - q) * width
        - b * (math.log(10.0 / 9.0) + np.log1p(-eps))
        + np.log(hyp2f1(1.0, b, b + q, _Z_SERIES))
    )
    end = np.minimum(width, np.log1p(_CUT_E_FOLDS / (b * eps)))
    decaying = q > 1.0
    end[decaying] = np.minimum(end[decaying], _CUT_E_FOLDS / (q[decaying] - 1.0))
    split = np.maximum(0.0, end - _STEEP_PANEL)
    nodes = np.concatenate(
        (split[:, None] * _UNIT_NODES, split[:, None] + (end - split)[:, None] * _UNIT_NODES),
        axis=1,
    )
    weights = np.concatenate(
        (split[:, None] * _UNIT_WEIGHTS, (end - split)[:, None] * _UNIT_WEIGHTS), axis=1
    )
    log_integrand = (1.0 - q[:, None]) * nodes - b[:, None] * np.log1p(
        eps[:, None] * np.expm1(nodes)
    )
    peak = log_integrand.max(axis=1)
    log_head = np.log(np.sum(weights * np.exp(log_integrand - peak[:, None]), axis=1)) + peak
    result: FloatArray = np.logaddexp(np.log(k) + log_head, log_tail)
    return result


def simulate(
    params: ParetoNBDParams, T: ArrayLike, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Draw (x, t_x) for customers observed for T time units, from the model itself.

    lambda ~ Gamma(r, alpha), mu ~ Gamma(s, beta), lifetime ~ Exponential(mu);
    the customer buys as a Poisson(lambda) process over min(lifetime, T), so
    x ~ Poisson(lambda * min(lifetime, T)) and, given x, the last of x uniform
    arrival times is min(lifetime, T) * Beta(x, 1). Used to check parameter
    recovery and to benchmark fits at scale.
    """
    Ta = as_float_array(T)
    shape = Ta.shape
    lam = rng.gamma(params.r, 1.0 / params.alpha, shape)
    mu = rng.gamma(params.s, 1.0 / params.beta, shape)
    # A dropout rate that underflows to 0 is a lifetime longer than any T.
    with np.errstate(divide="ignore"):
        active = np.minimum(rng.exponential(1.0, shape) / mu, Ta)
    x = rng.poisson(lam * active)
    has_repeat = x > 0
    share = rng.beta(np.where(has_repeat, x, 1), 1.0)
    t_x = np.where(has_repeat, active * share, 0.0)
    return x.astype(np.float64), t_x


def fit(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike, weights: ArrayLike | None = None
) -> FitResult[ParetoNBDParams]:
    """Maximum-likelihood fit to customer summaries (time in any unit; alpha, beta per it).

    Starting point: r = s = 1 (exponential mixing distributions), alpha
    matching the pooled purchase rate (mean x / mean T) and beta the mean age,
    i.e. a prior mean lifetime of the order of the observation window; it lies
    in the basin of the CDNOW optimum in weeks and in days.
    """
    xa, txa, Ta = as_float_array(x), as_float_array(t_x), as_float_array(T)
    validate_summaries(xa, txa, Ta)
    w = prepare_weights(weights, xa.shape)
    total_weight = float(w.sum())
    mean_x = float(np.average(xa, weights=w)) if total_weight > 0 else 0.0
    mean_T = float(np.average(Ta, weights=w)) if total_weight > 0 else 1.0
    scale = max(mean_T, 1e-9)
    alpha0 = scale / max(mean_x, 1e-3)

    def total(p: FloatArray) -> float:
        candidate = ParetoNBDParams(float(p[0]), float(p[1]), float(p[2]), float(p[3]))
        return float(np.dot(w, log_likelihood(candidate, xa, txa, Ta)))

    best, ll, converged, iterations = minimize_negative_log_likelihood(
        total, np.array([1.0, alpha0, 1.0, scale]), total_weight
    )
    fitted = ParetoNBDParams(float(best[0]), float(best[1]), float(best[2]), float(best[3]))
    return FitResult(fitted, ll, converged, iterations, total_weight)
