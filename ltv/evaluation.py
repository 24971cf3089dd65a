"""How the orders models fitted on a calibration period did on the holdout, as figures.

The fit chooses its orders model by one number per family, the holdout
log-likelihood (``ltv.holdout``). An operator deciding whether to trust the
choice wants to see where each family misses, in the three views the BTYD
literature uses (Fader, Hardie & Lee 2005, figures 2-4):

* by calibration frequency: per number of repeat purchase days before the
  split (0..6, 7+), the customers' mean repeat purchase days in the holdout,
  actual and predicted (the conditional expectations);
* over time: cumulative repeat purchase days after the split, day by day,
  actual and predicted (a model that gets the total right for the wrong
  reason bends the wrong way);
* P(alive) at the end of the calibration over a grid of frequency and
  recency, for the chosen family (what the valuation multiplies by).

Pure: a ``Split``, the calibration parameters and the actual counts in,
arrays out. ``ltv evaluate`` (``streams.evaluate``) gathers the inputs from
the stored states, prints and plots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ltv.fitting import ArrayLike, FloatArray, as_float_array
from ltv.holdout import HoldoutScore, Plain, Predictor, Split
from ltv.orders import OrdersParams, family_of

#: Rows of the by-frequency view: calibration frequency 0 .. BUCKETS - 2, then the rest.
BUCKETS = 8
#: The P(alive) matrix reaches the frequency this share of customers is at or
#: below, so a few heavy buyers do not squash everyone else into one corner.
ALIVE_FREQUENCY_QUANTILE = 0.99


@dataclass(frozen=True, slots=True)
class FrequencyRow:
    """Customers with ``frequency`` repeat purchase days before the split
    (the last row: that many or more), and their mean in the holdout."""

    frequency: int
    customers: int
    actual: float
    #: Per family: mean expected repeat purchase days in the holdout.
    predicted: dict[str, float]


@dataclass(frozen=True, slots=True)
class AliveMatrix:
    """P(alive at T) of a customer first buying T days before the split, by
    calibration frequency x (rows, 0..) and recency t_x in days (columns, 0..T).

    Cells with x = 0 and t_x > 0 are NaN: a customer with no repeat purchase
    has recency 0, so no one is there.
    """

    family: str
    T: float
    values: FloatArray


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Everything ``ltv evaluate`` prints and plots."""

    split: Split
    scores: dict[str, HoldoutScore]
    #: The family the fit chooses (``streams.fit.choose_on_holdout``).
    chosen: str
    frequency: list[FrequencyRow]
    #: Actual repeat purchase days by the end of holdout day 1..H.
    actual_cumulative: FloatArray
    #: Per family: expected repeat purchase days by the end of holdout day 1..H.
    predicted_cumulative: dict[str, FloatArray]
    alive: AliveMatrix


def evaluate(
    split: Split,
    params: Mapping[str, OrdersParams],
    scores: Mapping[str, HoldoutScore],
    chosen: str,
    actual_per_day: ArrayLike,
) -> Evaluation:
    """The three views of ``params`` (fitted on ``split``'s calibration columns).

    ``actual_per_day[k]``: repeat purchase days of the split's customers on
    holdout day k + 1 (``streams.fit.Population.holdout_per_day``).
    """
    models = {name: Plain(p) for name, p in params.items()}
    with np.errstate(all="ignore"):
        predicted = {
            name: m.expected_orders(split.days, split.x_cal, split.t_x_cal, split.T_cal, split.Z)
            for name, m in models.items()
        }
    return Evaluation(
        split=split,
        scores=dict(scores),
        chosen=chosen,
        frequency=by_frequency(split, predicted),
        actual_cumulative=np.cumsum(as_float_array(actual_per_day)),
        predicted_cumulative={name: cumulative(m, split) for name, m in models.items()},
        alive=alive_matrix(
            params[chosen],
            frequency_reach(split),
            float(split.T_cal.max()) if len(split.T_cal) else 0.0,
        ),
    )


def by_frequency(
    split: Split, predicted: Mapping[str, FloatArray], buckets: int = BUCKETS
) -> list[FrequencyRow]:
    """Customers and mean holdout repeat purchase days per calibration
    frequency; ``predicted[name]`` holds one expectation per row of ``split``."""
    bucket = np.minimum(split.x_cal, buckets - 1)
    actual = split.actual
    rows: list[FrequencyRow] = []
    for k in range(buckets):
        weight = np.where(bucket == k, split.weight, 0.0)
        rows.append(
            FrequencyRow(
                frequency=k,
                customers=int(weight.sum()),
                actual=_mean(weight, actual),
                predicted={name: _mean(weight, p) for name, p in predicted.items()},
            )
        )
    return rows


def _mean(weight: FloatArray, values: FloatArray) -> float:
    """Weighted mean (NaN over no weight: an empty row has no mean)."""
    total = float(weight.sum())
    return float(np.dot(weight, values)) / total if total else math.nan


def cumulative(model: Predictor, split: Split) -> FloatArray:
    """Expected repeat purchase days of the split's customers by the end of
    holdout day t, for t = 1..H: sum over customers of E[orders in (T, T+t]
    | calibration history]. One pass per day, vectorised over the collapsed
    rows (H x rows evaluations, never an H x rows array)."""
    days = int(split.days)
    out = np.empty(days)
    with np.errstate(all="ignore"):
        for t in range(1, days + 1):
            expected = model.expected_orders(
                float(t), split.x_cal, split.t_x_cal, split.T_cal, split.Z
            )
            out[t - 1] = np.dot(split.weight, expected)
    return out


def frequency_reach(split: Split, quantile: float = ALIVE_FREQUENCY_QUANTILE) -> int:
    """The calibration frequency ``quantile`` of the customers are at or below (at least 1)."""
    if not split.customers:
        return 1
    order = np.argsort(split.x_cal, kind="stable")
    covered = np.cumsum(split.weight[order])
    at = int(np.searchsorted(covered, quantile * covered[-1]))
    return max(1, int(split.x_cal[order][min(at, len(order) - 1)]))


def alive_matrix(params: OrdersParams, max_frequency: int, T: float) -> AliveMatrix:
    """P(alive) under ``params`` at T for x = 0..max_frequency and t_x = 0..T (whole days)."""
    x, t_x = np.meshgrid(
        np.arange(max_frequency + 1, dtype=np.float64),
        np.arange(int(T) + 1, dtype=np.float64),
        indexing="ij",
    )
    with np.errstate(all="ignore"):
        values = family_of(params).p_alive(params, x.ravel(), t_x.ravel(), np.full(x.size, T))
    grid = values.reshape(x.shape)
    grid[0, 1:] = math.nan
    return AliveMatrix(family_of(params).name, T, grid)
