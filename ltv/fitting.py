"""Maximum-likelihood driver shared by the BTYD models (docs/valuation.md).

Every BTYD parameter (r, alpha, a, b, p, q, gamma) is strictly positive, so the
optimiser works on their logarithms: the search space becomes unconstrained,
and parameters that differ by orders of magnitude (alpha in days is ~30, a is
~0.8) are put on a comparable scale, which is what quasi-Newton methods need.

The objective is the *mean* negative log-likelihood per customer (total weight
normalised) so that the optimiser's tolerances mean the same thing for 2 357
CDNOW customers and for a million synthetic ones; the reported log-likelihood
is the total, as published (e.g. -9582.4 for BG/NBD on CDNOW, Fader, Hardie &
Lee 2005, "Counting your customers the easy way", section 5).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class FitResult(Generic[P]):
    """Outcome of one maximum-likelihood fit.

    ``params`` are in the time unit of the data that was fitted;
    ``log_likelihood`` is the (weighted) total over customers; ``n`` is the
    total weight (the number of customers when unweighted).
    """

    params: P
    log_likelihood: float
    converged: bool
    iterations: int
    n: float


def as_float_array(values: ArrayLike) -> FloatArray:
    """Return ``values`` as a float64 ndarray (no copy when already one)."""
    return np.asarray(values, dtype=np.float64)


def prepare_weights(weights: ArrayLike | None, shape: tuple[int, ...]) -> FloatArray:
    """Broadcast optional per-customer weights (e.g. counts of identical summaries)."""
    if weights is None:
        return np.ones(shape, dtype=np.float64)
    w = np.broadcast_to(as_float_array(weights), shape)
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite and non-negative")
    return w


def validate_summaries(x: FloatArray, t_x: FloatArray, T: FloatArray) -> None:
    """Reject (x, t_x, T) that no purchase history produces, before any fit.

    The likelihoods are only defined for these: a negative count or a last
    purchase after the end of observation would silently give NaN, and a
    recency without repeat purchases means the summary was built wrongly.
    """
    if not (x.shape == t_x.shape == T.shape):
        raise ValueError("x, t_x and T must have the same shape")
    if np.any(x < 0) or np.any(t_x < 0) or np.any(t_x > T):
        raise ValueError("need x >= 0 and 0 <= t_x <= T")
    if np.any((x == 0) & (t_x != 0)):
        raise ValueError("t_x must be 0 when x == 0")


def minimize_negative_log_likelihood(
    log_likelihood: Callable[[FloatArray], float],
    initial: FloatArray,
    total_weight: float,
    *,
    max_iterations: int = 2000,
) -> tuple[FloatArray, float, bool, int]:
    """Maximise ``log_likelihood(params)`` over positive parameters.

    Returns ``(params, total_log_likelihood, converged, iterations)``.

    Strategy: L-BFGS-B on log-parameters with finite-difference gradients (the
    likelihoods are smooth, and gradients by differences cost only
    ``len(params)`` extra evaluations); if it reports failure (typically a
    flat ridge of the likelihood, e.g. ``a, b -> inf`` when nobody drops out),
    a Nelder-Mead pass from its end point is followed by a second L-BFGS-B
    polish. Non-finite likelihoods are mapped to a large penalty so that the
    line search backs off instead of aborting.
    """
    if total_weight <= 0:
        raise ValueError("cannot fit on zero total weight")
    penalty = 1e100

    def objective(log_params: FloatArray) -> float:
        value = log_likelihood(np.exp(log_params))
        if not math.isfinite(value):
            return penalty
        return -value / total_weight

    first = minimize(
        objective,
        np.log(initial),
        method="L-BFGS-B",
        bounds=[(-20.0, 20.0)] * len(initial),
        options={"maxiter": max_iterations, "ftol": 1e-13, "gtol": 1e-9},
    )
    iterations = int(first.nit)
    best = first
    if not first.success:
        simplex = minimize(
            objective,
            first.x,
            method="Nelder-Mead",
            options={"maxiter": max_iterations, "xatol": 1e-9, "fatol": 1e-13},
        )
        polish = minimize(
            objective,
            simplex.x,
            method="L-BFGS-B",
            bounds=[(-20.0, 20.0)] * len(initial),
            options={"maxiter": max_iterations, "ftol": 1e-13, "gtol": 1e-9},
        )
        iterations += int(simplex.nit) + int(polish.nit)
        best = polish if polish.fun <= simplex.fun else simplex
        # On a flat ridge (a, b -> inf together) L-BFGS-B's line search can
        # report failure at the optimum; two different methods ending on the
        # same objective value is a converged fit all the same.
        agreed = bool(abs(polish.fun - simplex.fun) <= 1e-9 * max(1.0, abs(best.fun)))
        succeeded = bool(polish.success or simplex.success) or agreed
    else:
        succeeded = True
    params = np.exp(best.x)
    total = log_likelihood(params)
    converged = succeeded and math.isfinite(total)
    return params, float(total), converged, iterations


def alive_from_log_odds(log_odds: float) -> float:
    """P(alive) = 1 / (1 + exp(log_odds)) for log odds of dead against alive,
    without overflowing ``exp`` at either end (the BTYD models' scalar paths)."""
    if log_odds > 0:
        e = math.exp(-log_odds)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(log_odds))
