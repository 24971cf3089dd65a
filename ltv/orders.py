"""The purchase-and-dropout models a fit may choose, behind one set of functions.

BG/NBD, MBG/NBD and Pareto/NBD all describe a customer by (x, t_x, T) and
answer the same questions: the likelihood of a history, P(alive), and the
expected orders over the next t of a customer known to be alive (the growth
curve). Which one values customers is decided per fit on a holdout
(``ltv.holdout``), so the valuation, the risk schedule and the fit job ask
this module, which dispatches on the parameter type. Adding a family means
adding it here, nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from ltv import betageo, bgnbd, mbgnbd, paretonbd
from ltv.betageo import BetaGeoParams
from ltv.bgnbd import BGNBDParams
from ltv.fitting import ArrayLike, FitResult, FloatArray, as_float_array
from ltv.mbgnbd import MBGNBDParams
from ltv.paretonbd import ParetoNBDParams

#: The parameters of any orders model.
OrdersParams = BetaGeoParams | ParetoNBDParams


@dataclass(frozen=True, slots=True)
class Family:
    """One model family: its name in the model document and its functions."""

    name: str
    params_type: type[BGNBDParams] | type[MBGNBDParams] | type[ParetoNBDParams]
    fit: Callable[[ArrayLike, ArrayLike, ArrayLike, ArrayLike | None], FitResult[Any]]
    log_likelihood: Callable[[Any, ArrayLike, ArrayLike, ArrayLike], FloatArray]
    p_alive: Callable[[Any, ArrayLike, ArrayLike, ArrayLike], FloatArray]
    p_alive_scalar: Callable[[Any, float, float, float], float]
    expected_orders: Callable[[Any, ArrayLike, ArrayLike, ArrayLike, ArrayLike], FloatArray]
    growth_curve: Callable[[Any, ArrayLike, ArrayLike, ArrayLike], FloatArray]

    def params(self, values: dict[str, float]) -> OrdersParams:
        """The family's parameters from the mapping ``as_dict`` wrote."""
        return self.params_type(*(float(values[f.name]) for f in fields(self.params_type)))


def _beta_geo(name: str, params_type: type[BGNBDParams] | type[MBGNBDParams]) -> Family:
    module = bgnbd if params_type is BGNBDParams else mbgnbd
    return Family(
        name,
        params_type,
        module.fit,
        module.log_likelihood,
        module.p_alive,
        module.p_alive_scalar,
        module.expected_orders,
        betageo.growth_curve,
    )


#: Every family a fit may choose, by the name used in the model document.
FAMILIES: dict[str, Family] = {
    "bgnbd": _beta_geo("bgnbd", BGNBDParams),
    "mbgnbd": _beta_geo("mbgnbd", MBGNBDParams),
    "paretonbd": Family(
        "paretonbd",
        ParetoNBDParams,
        paretonbd.fit,
        paretonbd.log_likelihood,
        paretonbd.p_alive,
        paretonbd.p_alive_scalar,
        paretonbd.expected_orders,
        paretonbd.growth_curve,
    ),
}


def family_of(params: OrdersParams) -> Family:
    """The family whose parameter type ``params`` is."""
    for family in FAMILIES.values():
        if type(params) is family.params_type:
            return family
    raise TypeError(f"not the parameters of an orders model: {params!r}")


def p_alive_scalar(params: OrdersParams, x: float, t_x: float, T: float) -> float:
    """P(alive at T | x, t_x, T) of one customer under ``params``' model."""
    return family_of(params).p_alive_scalar(params, x, t_x, T)


def growth_curve(params: OrdersParams, x: ArrayLike, T: ArrayLike, t: ArrayLike) -> FloatArray:
    """Expected orders over (T, T+t] of a customer known to be alive at T."""
    return family_of(params).growth_curve(params, x, T, t)


def curve_scale(params: OrdersParams, T: ArrayLike) -> FloatArray:
    """Where the growth curve's nearest singularity sits, as a distance below t = 0.

    The discounted-CLV quadrature (``ltv.clv``) integrates in u = ln(1 + t/c)
    with this c, which keeps the curve analytic in a strip around the
    interval: the BG family's curve has its branch point at t = -(alpha + T),
    Pareto/NBD's, a power of (beta + T)/(beta + T + t), at t = -(beta + T).
    """
    shift = params.beta if isinstance(params, ParetoNBDParams) else params.alpha
    result: FloatArray = as_float_array(T) + shift
    return result
