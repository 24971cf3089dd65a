"""Calibration tracking at run time (docs/valuation.md, "Calibration").

The fit job (``streams.fit``), which the worker group runs, already
decodes every customer's state: while it scans, a ``Tally`` counts the
purchase days of the windows that have ended, and once the fit is done
``calibrated`` closes them and opens new predictions from the fitted model
(``ltv.calibration``). Counting from the states in Redis, not from the
event stream, is what makes the counts exact: a state holds every purchase
day of the customer's history exactly once whatever the crashes, replays
and arrival order, so no worker needs to count events as they pass.

Workers export the outcome from the model document they adopt
(``export``): the ratio of the last closed window and the open prediction.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import Gauge

from ltv.calibration import WINDOWS, Calibration, Count, Window, predict
from ltv.fitting import FloatArray
from ltv.orders import FAMILIES
from state.customer import CustomerState
from state.model_store import ModelRecord
from streams.metrics import METRICS, Metrics

if TYPE_CHECKING:
    from streams.fit import Population


def last_order_by(s: CustomerState, at: datetime) -> datetime:
    """Time of the customer's last live order at or before ``at``.

    Call it for customers whose first order is at or before ``at`` only:
    that order is then the fallback, and the state's ``last_order_at``
    answers without reading the ledger unless the customer bought since.
    """
    first = s.first_order_at
    assert first is not None and first <= at
    if s.last_order_at is not None and s.last_order_at <= at:
        return s.last_order_at
    live = (e.occurred_at for e in s.ledger.values() if not e.cancelled and e.occurred_at <= at)
    return max(live, default=first)


@dataclass
class Tally:
    """The counts of the windows a fit closes, filled while it scans the states."""

    counts: tuple[Count, ...] = ()

    @classmethod
    def due(cls, calibration: Calibration, as_of: datetime) -> Tally:
        return cls(tuple(Count(window) for window in calibration.due(as_of)))

    def add(self, s: CustomerState) -> None:
        first = s.first_order_at
        if first is None:
            return
        for count in self.counts:
            count.add(first, s.days, partial(last_order_by, s))


def calibrated(record: ModelRecord, previous: Calibration, pop: Population) -> ModelRecord:
    """``record`` (just fitted on ``pop``) with the windows ``pop``'s scan
    counted closed and a prediction of its own for every length left
    without an open window (``Calibration.advance``)."""
    family = FAMILIES[record.orders_model]
    params = family.params(record.models[record.orders_model].params)
    edges = record.rfm_edges
    assert edges is not None, "a successful fit has RFM edges"

    def opened(lengths: tuple[int, ...]) -> tuple[Window, ...]:
        return predict(
            family,
            params,
            (_floats(pop.x), _floats(pop.t_x), _floats(pop.T)),
            _floats(pop.recency),
            np.frombuffer(pop.first_month, dtype=np.int64),
            edges,
            pop.as_of,
            lengths,
            version=record.version,
            orders_model=record.orders_model,
        )

    closed = (count.closed(pop.as_of) for count in pop.calibration.counts)
    return replace(record, calibration=previous.advance(pop.as_of, closed, opened))


def _floats(column: array[float]) -> FloatArray:
    return np.frombuffer(column, dtype=np.float64)


def export(calibration: Calibration, metrics: Metrics = METRICS) -> None:
    """Set the calibration gauges from an adopted document; a window with
    no closed (or no open) prediction exports no sample rather than a
    made-up value."""
    for days in WINDOWS:
        label = f"{days}d"
        latest = calibration.latest(days)
        _set(metrics.model_calibration_ratio, label, None if latest is None else latest.ratio)
        window = calibration.open_window(days)
        predicted = None if window is None else window.predicted.total
        _set(metrics.model_calibration_predicted, label, predicted)


def _set(gauge: Gauge, label: str, value: float | None) -> None:
    if value is None:
        gauge.remove(label)
    else:
        gauge.labels(label).set(value)
