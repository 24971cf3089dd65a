"""MBG/NBD model (Batislam, Denizel & Filiztekin 2007; also Wagner & Hoppe 2008).

The dropout coin is also tossed right after the *first* purchase, so a
one-time buyer who has been silent for a long time gets P(alive) < 1
(1 / (1 + a/b ((alpha+T)/alpha)^r) at x = 0). That is why predicted_ltv uses
this model (docs/valuation.md). The closed forms live in :mod:`ltv.betageo` with
offset m = 1; this module binds them.
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
    "MBGNBDParams",
    "expected_orders",
    "expected_orders_scalar",
    "fit",
    "log_likelihood",
    "p_alive",
    "p_alive_scalar",
    "simulate",
]


@dataclass(frozen=True, slots=True)
class MBGNBDParams(BetaGeoParams):
    """MBG/NBD (r, alpha, a, b): dropout possible after every purchase, first included."""

    offset: ClassVar[int] = 1


def fit(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike, weights: ArrayLike | None = None
) -> FitResult[MBGNBDParams]:
    """MLE of Batislam et al. 2007 eq. 3 summed over customers (time in any unit)."""
    return fit_beta_geo(MBGNBDParams, x, t_x, T, weights)
