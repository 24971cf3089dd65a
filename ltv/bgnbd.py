"""BG/NBD model (Fader, Hardie & Lee 2005, "Counting your customers the easy way").

Customers drop out only after a *repeat* purchase, so a customer with x = 0
has P(alive) = 1 whatever their age: fine for fitting and for the published
CDNOW benchmark, not for valuing one-time buyers (predicted_ltv uses MBG/NBD for
that, docs/valuation.md). The closed forms live in :mod:`ltv.betageo`; this module binds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ltv.betageo import (
    BetaGeoParams,
    expected_orders,
    expected_orders_scalar,
    fit_beta_geo,
    log_likelihood,
    p_alive,
    p_alive_scalar,
    simulate,
)
from ltv.fitting import ArrayLike, FitResult

__all__ = [
    "BGNBDParams",
    "expected_orders",
    "expected_orders_scalar",
    "fit",
    "log_likelihood",
    "p_alive",
    "p_alive_scalar",
    "simulate",
]


@dataclass(frozen=True, slots=True)
class BGNBDParams(BetaGeoParams):
    """BG/NBD (r, alpha, a, b): dropout coin tossed after repeat purchases only."""

    offset: ClassVar[int] = 0


def fit(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike, weights: ArrayLike | None = None
) -> FitResult[BGNBDParams]:
    """MLE of FHL 2005 eq. 6 summed over customers (time in any unit)."""
    return fit_beta_geo(BGNBDParams, x, t_x, T, weights)
