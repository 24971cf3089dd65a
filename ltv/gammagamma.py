"""Gamma-Gamma spend model (Fader, Hardie & Lee 2005, "RFM and CLV: using
iso-value curves for customer base analysis", JMR 42(4), section 3; details in
Fader & Hardie 2013, "The Gamma-Gamma model of monetary value").

Each transaction value z ~ Gamma(p, nu) around the customer's own mean p/nu,
and nu ~ Gamma(q, gamma) across customers. Spend is modelled only from repeat
purchases (x >= 1, zbar = their mean), independent of the purchase process, so
predicted_ltv = E[spend] x discounted expected orders (docs/valuation.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from ltv.fitting import (
    ArrayLike,
    FitResult,
    FloatArray,
    as_float_array,
    minimize_negative_log_likelihood,
    prepare_weights,
)


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    """Shape p of transaction values, shape q and scale-rate gamma of nu."""

    p: float
    q: float
    gamma: float

    def __post_init__(self) -> None:
        for name in ("p", "q", "gamma"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive and finite, got {value!r}")

    def as_dict(self) -> dict[str, float]:
        """Plain mapping for the ``GET /model`` body (docs/http.md)."""
        return {"p": self.p, "q": self.q, "gamma": self.gamma}


def log_likelihood(params: GammaGammaParams, x: ArrayLike, zbar: ArrayLike) -> FloatArray:
    """Per-customer log density of the mean spend zbar over x >= 1 transactions.

    The sum of x Gamma(p, nu) values is Gamma(px, nu); integrating nu over
    Gamma(q, gamma) and changing variables to the mean (Jacobian x) gives
    (Fader & Hardie 2013, eq. 3):

        f(zbar) = G(px+q) / (G(px) G(q)) * gamma^q (x zbar)^(px-1) x / (gamma + x zbar)^(px+q)
    """
    p, q, g = params.p, params.q, params.gamma
    xa, za = as_float_array(x), as_float_array(zbar)
    total = xa * za
    result: FloatArray = (
        gammaln(p * xa + q)
        - gammaln(p * xa)
        - gammaln(q)
        + q * math.log(g)
        + (p * xa - 1.0) * np.log(total)
        + np.log(xa)
        - (p * xa + q) * np.log(g + total)
    )
    return result


def conditional_expected_spend(
    params: GammaGammaParams, x: ArrayLike, zbar: ArrayLike
) -> FloatArray:
    """E[mean transaction value | x, zbar] (FHL 2005 "RFM and CLV", eq. 5).

        p (gamma + x zbar) / (p x + q - 1)
      = w * p gamma / (q - 1) + (1 - w) * zbar,   w = (q - 1) / (p x + q - 1),

    a credibility-weighted blend of the population mean and the customer's own
    mean. For x = 0 it is the population mean p gamma / (q - 1). Where
    p x + q <= 1 the posterior mean does not exist and +inf is returned.
    """
    p, q, g = params.p, params.q, params.gamma
    xa, za = as_float_array(x), as_float_array(zbar)
    denominator = p * xa + q - 1.0
    safe = np.where(denominator > 0, denominator, 1.0)
    value = p * (g + xa * za) / safe
    result: FloatArray = np.where(denominator > 0, value, np.inf)
    return result


def conditional_expected_spend_scalar(params: GammaGammaParams, x: float, zbar: float) -> float:
    """Scalar fast path of :func:`conditional_expected_spend`."""
    denominator = params.p * x + params.q - 1.0
    if denominator <= 0:
        return math.inf
    return params.p * (params.gamma + x * zbar) / denominator


def fit(
    x: ArrayLike, zbar: ArrayLike, weights: ArrayLike | None = None
) -> FitResult[GammaGammaParams]:
    """MLE over customers with x >= 1 and zbar > 0; others are ignored.

    One-time buyers carry no repeat-spend information, and a zero mean has
    density 0 under a gamma with px > 1, so both are left out (on CDNOW all 946
    repeat buyers have zbar > 0). Start: p = q = 2 and gamma set so that the
    prior mean p gamma / (q - 1) equals the observed mean of zbar.
    """
    xa, za = as_float_array(x), as_float_array(zbar)
    if xa.shape != za.shape:
        raise ValueError("x and zbar must have the same shape")
    w_all = prepare_weights(weights, xa.shape)
    keep = (xa >= 1) & (za > 0)
    xk, zk, wk = xa[keep], za[keep], w_all[keep]
    total_weight = float(wk.sum())
    mean_z = float(np.average(zk, weights=wk)) if total_weight > 0 else 1.0

    def total(params: FloatArray) -> float:
        candidate = GammaGammaParams(float(params[0]), float(params[1]), float(params[2]))
        return float(np.dot(wk, log_likelihood(candidate, xk, zk)))

    best, ll, converged, iterations = minimize_negative_log_likelihood(
        total, np.array([2.0, 2.0, mean_z / 2.0]), total_weight
    )
    fitted = GammaGammaParams(float(best[0]), float(best[1]), float(best[2]))
    return FitResult(fitted, ll, converged, iterations, total_weight)
