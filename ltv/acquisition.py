"""What a customer's first order says about it: the covariates of the orders model.

Before a second purchase, (x, t_x, T) of every one-time buyer of a day is the
same, so a plain BTYD model values them alike. How they came and what they
first bought is known from the first order on and never changes, which is
what the time-invariant covariate models (``ltv.covariates``) need:

* ``channel``: the acquisition channel (the first order carrying one);
* ``first_value_band``: the first purchase day's value in base currency, in
  quartile bands of the fitted population (``q1`` .. ``q4``; the edges are
  stored with the model, so a customer keeps its band between fits of the
  same model);
* ``first_category``: the category of the first order carrying categories;
* ``first_subscription``: whether the first order started a subscription.

Each is a function of the customer's state that does not depend on event
arrival order (``state.customer``), so neither does the covariate row.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ltv.covariates import CovariateModel
from ltv.fitting import ArrayLike, as_float_array
from ltv.orders import OrdersParams

#: The covariate names, in the order of a customer's values.
COVARIATES = ("channel", "first_value_band", "first_category", "first_subscription")


@dataclass(frozen=True, slots=True)
class FirstOrder:
    """The time-invariant facts of a customer's first order."""

    channel: str | None
    value: float
    category: str | None
    subscription: bool


def band_edges(values: ArrayLike) -> tuple[float, ...]:
    """The quartile edges (upper bounds of bands 1-3) of first-order values."""
    data = as_float_array(values)
    if data.size == 0:
        return ()
    return tuple(float(q) for q in np.quantile(data, (0.25, 0.5, 0.75)))


def levels(first: FirstOrder, edges: Sequence[float]) -> tuple[str | None, ...]:
    """A customer's covariate values (one per ``COVARIATES``) given the value band edges."""
    band = f"q{bisect.bisect_left(edges, first.value) + 1}" if edges else None
    return (first.channel, band, first.category, "yes" if first.subscription else "no")


@dataclass(frozen=True, slots=True)
class OrdersCovariates:
    """A covariate orders model in force, with the value bands it was fitted with."""

    model: CovariateModel
    edges: tuple[float, ...]

    def params_for(self, first: FirstOrder | None) -> OrdersParams:
        """The orders-model parameters of a customer (the reference's without a first order)."""
        if first is None:
            return self.model.base
        return self.model.params_for(self.model.design.row(levels(first, self.edges)))

    def as_json(self) -> dict[str, Any]:
        return {"model": self.model.as_json(), "value_band_edges": list(self.edges)}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> OrdersCovariates:
        return cls(
            CovariateModel.from_json(doc["model"]),
            tuple(float(e) for e in doc["value_band_edges"]),
        )
