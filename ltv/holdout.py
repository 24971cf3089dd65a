"""Scoring orders models on a holdout period, and choosing one (docs/valuation.md).

Each fit splits the population's history at ``split = as_of - holdout``:
the candidates are fitted on what customers who had bought before the split
did until then (calibration), and judged on what the same customers did
after it (holdout). Two figures per candidate:

* holdout log-likelihood: sum over customers of
  LL(x, t_x, T through as_of) - LL(x, t_x, T through the split), both with
  the calibration parameters. Every model's (x, t_x, T) likelihood is the
  density of the whole sequence of purchase times, so the difference is the
  log-density of what happened in the holdout given the calibration history:
  a proper score, comparable across models and families. The choice goes by
  it.
* predicted against actual repeat purchase days in the holdout (sum of the
  conditional expectations, and the mean absolute error per customer): the
  figure FHL 2005 and the CDNOW literature report, shown beside it.

Pure: arrays in, figures out. The fit job (``streams.fit``) and ``ltv
evaluate`` build the arrays from the stored states.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ltv import covariates
from ltv.covariates import CovariateModel
from ltv.fitting import ArrayLike, FloatArray, as_float_array
from ltv.orders import OrdersParams, family_of


class Predictor(Protocol):
    """A fitted orders model, plain or with covariates (``Z``: the rows' design rows)."""

    def log_likelihood(
        self, x: FloatArray, t_x: FloatArray, T: FloatArray, Z: FloatArray
    ) -> FloatArray: ...

    def expected_orders(
        self, t: float, x: FloatArray, t_x: FloatArray, T: FloatArray, Z: FloatArray
    ) -> FloatArray: ...


@dataclass(frozen=True, slots=True)
class Plain:
    """A model without covariates: every customer has the same parameters."""

    params: OrdersParams

    def log_likelihood(
        self, x: FloatArray, t_x: FloatArray, T: FloatArray, Z: FloatArray
    ) -> FloatArray:
        return family_of(self.params).log_likelihood(self.params, x, t_x, T)

    def expected_orders(
        self, t: float, x: FloatArray, t_x: FloatArray, T: FloatArray, Z: FloatArray
    ) -> FloatArray:
        return family_of(self.params).expected_orders(self.params, t, x, t_x, T)


@dataclass(frozen=True, slots=True)
class WithCovariates:
    """A covariate model: each row has its design row's parameters."""

    model: CovariateModel

    def log_likelihood(
        self, x: FloatArray, t_x: FloatArray, T: FloatArray, Z: FloatArray
    ) -> FloatArray:
        return covariates.log_likelihood(self.model, x, t_x, T, Z)

    def expected_orders(
        self, t: float, x: FloatArray, t_x: FloatArray, T: FloatArray, Z: FloatArray
    ) -> FloatArray:
        return covariates.expected_orders(self.model, t, x, t_x, T, Z)


@dataclass(frozen=True, slots=True)
class Split:
    """Each customer who bought before the split: summaries at the split and at the end.

    ``weight`` counts identical rows (whole days make many), so a population
    of millions is scored on its distinct rows. ``Z`` holds the rows' design
    rows for covariate models (no columns when there are none).
    """

    x_cal: FloatArray
    t_x_cal: FloatArray
    T_cal: FloatArray
    x_end: FloatArray
    t_x_end: FloatArray
    T_end: FloatArray
    weight: FloatArray
    #: Length of the holdout, in the time unit of the summaries.
    days: float
    Z: FloatArray

    @classmethod
    def of(
        cls,
        x_cal: ArrayLike,
        t_x_cal: ArrayLike,
        T_cal: ArrayLike,
        x_end: ArrayLike,
        t_x_end: ArrayLike,
        T_end: ArrayLike,
        days: float,
        Z: ArrayLike | None = None,
    ) -> Split:
        """Collapse per-customer columns (and design rows) to distinct rows with their counts."""
        summaries = [as_float_array(c) for c in (x_cal, t_x_cal, T_cal, x_end, t_x_end, T_end)]
        design = np.zeros((len(summaries[0]), 0)) if Z is None else as_float_array(Z)
        columns = np.column_stack([*summaries, design])
        rows, counts = np.unique(columns, axis=0, return_counts=True)
        x_c, tx_c, T_c, x_e, tx_e, T_e = (rows[:, i].copy() for i in range(6))
        return cls(
            x_c, tx_c, T_c, x_e, tx_e, T_e, counts.astype(np.float64), days, rows[:, 6:].copy()
        )

    @property
    def customers(self) -> int:
        return int(self.weight.sum())

    @property
    def actual(self) -> FloatArray:
        """Repeat purchase days each row made in the holdout."""
        result: FloatArray = self.x_end - self.x_cal
        return result


@dataclass(frozen=True, slots=True)
class HoldoutScore:
    """How one candidate fitted on the calibration did on the holdout."""

    calibration_log_likelihood: float
    holdout_log_likelihood: float
    predicted: float
    actual: float
    mean_absolute_error: float
    converged: bool

    @property
    def error(self) -> float | None:
        """Predicted over actual repeat purchase days, minus one (None: none happened)."""
        return self.predicted / self.actual - 1.0 if self.actual > 0 else None

    def as_json(self) -> dict[str, Any]:
        """The candidate's entry of ``GET /model`` ``selection.scores``."""
        return {
            "calibration_log_likelihood": _finite(self.calibration_log_likelihood),
            "holdout_log_likelihood": _finite(self.holdout_log_likelihood),
            "predicted_repeat_days": _finite(self.predicted),
            "actual_repeat_days": self.actual,
            "error": None if self.error is None else _finite(self.error),
            "mean_absolute_error": _finite(self.mean_absolute_error),
            "converged": self.converged,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> HoldoutScore:
        def number(key: str) -> float:
            value = doc.get(key)
            return math.nan if value is None else float(value)

        return cls(
            calibration_log_likelihood=number("calibration_log_likelihood"),
            holdout_log_likelihood=number("holdout_log_likelihood"),
            predicted=number("predicted_repeat_days"),
            actual=number("actual_repeat_days"),
            mean_absolute_error=number("mean_absolute_error"),
            converged=bool(doc.get("converged", False)),
        )


def _finite(value: float) -> float | None:
    """JSON has no NaN or infinity: a figure a model could not give is null."""
    return value if math.isfinite(value) else None


def score(
    model: Predictor, split: Split, *, calibration_log_likelihood: float, converged: bool
) -> HoldoutScore:
    """Score ``model`` (fitted on ``split``'s calibration columns) on the holdout."""
    w = split.weight
    with np.errstate(all="ignore"):
        at_end = model.log_likelihood(split.x_end, split.t_x_end, split.T_end, split.Z)
        at_split = model.log_likelihood(split.x_cal, split.t_x_cal, split.T_cal, split.Z)
        predicted = model.expected_orders(
            split.days, split.x_cal, split.t_x_cal, split.T_cal, split.Z
        )
    actual = split.actual
    total = float(w.sum())
    return HoldoutScore(
        calibration_log_likelihood=calibration_log_likelihood,
        holdout_log_likelihood=float(np.dot(w, at_end - at_split)),
        predicted=float(np.dot(w, predicted)),
        actual=float(np.dot(w, actual)),
        mean_absolute_error=float(np.dot(w, np.abs(predicted - actual)) / total)
        if total
        else math.nan,
        converged=converged,
    )


def choose(scores: Mapping[str, HoldoutScore]) -> str | None:
    """The candidate with the highest holdout log-likelihood among those that
    converged and gave a finite one; ties go to the name first in ``scores``.
    None: no candidate qualifies."""
    best: tuple[str, float] | None = None
    for name, s in scores.items():
        ll = s.holdout_log_likelihood
        if not (s.converged and math.isfinite(ll)):
            continue
        if best is None or ll > best[1]:
            best = (name, ll)
    return None if best is None else best[0]


def holdout_days(span_days: float, wanted_days: float) -> float:
    """The holdout length for a history of ``span_days``: ``wanted_days``, but
    at most two thirds of the span, so the calibration keeps at least half as
    long a history as it is judged on (CDNOW's classic split is 39 weeks
    against 39); 0 (no holdout) below a week, where the holdout says nothing."""
    days = float(min(wanted_days, math.floor(span_days * 2 / 3)))
    return days if days >= 7 else 0.0
