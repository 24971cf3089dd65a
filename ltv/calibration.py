"""Calibration of the fitted orders model against what customers then did.

A fit predicts, for each window length in ``WINDOWS``, the repeat purchase
days its population will make in the days after its clock; a later fit,
once the window has closed, counts the purchase days that happened and
records actual / predicted (docs/valuation.md, "Calibration"). Everything
is in aggregate, in total and broken down by acquisition cohort and RFM
segment, never per customer, so the model document stays small.

Units: a purchase day, the unit the BTYD models count (x = distinct
purchase days after the first), so the prediction is the sum of the
family's ``expected_orders`` and the count needs no conversion.

Window of a prediction made at ``start``: the UTC days d with
start_day < d <= start_day + days, where start_day is the ordinal of
``start``'s UTC day; its population the customers whose first order is at
or before ``start``.

Pure: the fit job (``streams.calibration``) feeds in the population's
columns and each decoded state; nothing here does I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from ltv.fitting import ArrayLike, as_float_array
from ltv.orders import Family, OrdersParams
from ltv.rfm import SEGMENTS, RfmEdges, rfm_score, segment_indices

#: Window lengths predicted and judged, in days.
WINDOWS: tuple[int, ...] = (30, 90)
#: Cohorts more months before the prediction than this share one bucket,
#: which bounds the breakdown at COHORT_MONTHS + 2 keys.
COHORT_MONTHS = 24
OLDER = "older"
#: Closed windows kept per length: two years of 30-day windows judged in turn.
KEEP_CLOSED = 12


def month_index(at: datetime) -> int:
    """Months since year 0 of ``at``'s UTC month: cohorts as integers."""
    utc = at.astimezone(UTC)
    return utc.year * 12 + utc.month - 1


def cohort_label(first_month: int, start_month: int) -> str:
    """``YYYY-MM`` of the month of the first order, or ``OLDER``."""
    if start_month - first_month > COHORT_MONTHS:
        return OLDER
    return f"{first_month // 12:04d}-{first_month % 12 + 1:02d}"


def days_since(at: datetime, last_order_at: datetime) -> int:
    """Whole days from the last order to ``at``: the recency RFM scores (as at fit time)."""
    return max(0, (at - last_order_at).days)


@dataclass(frozen=True, slots=True)
class Breakdown:
    """Repeat purchase days in total, by cohort and by segment (keys with none left out)."""

    total: float
    by_cohort: dict[str, float] = field(default_factory=dict)
    by_segment: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"total": self.total, "by_cohort": self.by_cohort, "by_segment": self.by_segment}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Breakdown:
        return cls(doc["total"], dict(doc["by_cohort"]), dict(doc["by_segment"]))


@dataclass(frozen=True, slots=True)
class Window:
    """One prediction: open while ``actual`` is None, closed (judged) once counted."""

    days: int
    start: datetime
    #: The fit that predicted: its version and orders model.
    version: str | None
    orders_model: str
    #: Its RFM edges, to put a customer in the segment it had at ``start``.
    edges: RfmEdges
    predicted: Breakdown
    actual: Breakdown | None = None
    #: The clock of the fit that counted ``actual``.
    counted_at: datetime | None = None

    @property
    def until(self) -> datetime:
        return self.start + timedelta(days=self.days)

    @property
    def first_day(self) -> int:
        """Ordinal of the UTC day of ``start``: the last day before the window."""
        return self.start.astimezone(UTC).toordinal()

    @property
    def ratio(self) -> float | None:
        """actual / predicted once closed; None while open or when nothing was predicted."""
        if self.actual is None or self.predicted.total <= 0:
            return None
        return self.actual.total / self.predicted.total

    def as_json(self) -> dict[str, Any]:
        return {
            "window_days": self.days,
            "from": _time(self.start),
            "until": _time(self.until),
            "version": self.version,
            "orders_model": self.orders_model,
            "rfm_edges": self.edges.as_json(),
            "predicted": self.predicted.as_json(),
            "actual": None if self.actual is None else self.actual.as_json(),
            "ratio": self.ratio,
            "counted_at": None if self.counted_at is None else _time(self.counted_at),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Window:
        return cls(
            days=int(doc["window_days"]),
            start=datetime.fromisoformat(doc["from"]),
            version=doc.get("version"),
            orders_model=doc["orders_model"],
            edges=RfmEdges.from_json(doc["rfm_edges"]),
            predicted=Breakdown.from_json(doc["predicted"]),
            actual=None if doc.get("actual") is None else Breakdown.from_json(doc["actual"]),
            counted_at=None
            if doc.get("counted_at") is None
            else datetime.fromisoformat(doc["counted_at"]),
        )


def _time(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Calibration:
    """The open predictions (at most one per length) and the last closed ones, oldest first."""

    open: tuple[Window, ...] = ()
    closed: tuple[Window, ...] = ()

    def due(self, as_of: datetime) -> tuple[Window, ...]:
        """Open windows a fit at ``as_of`` counts: those that have ended by then."""
        return tuple(w for w in self.open if w.until <= as_of)

    def open_window(self, days: int) -> Window | None:
        return next((w for w in self.open if w.days == days), None)

    def latest(self, days: int) -> Window | None:
        """The most recently closed window of this length."""
        return next((w for w in reversed(self.closed) if w.days == days), None)

    def advance(
        self,
        as_of: datetime,
        counted: Iterable[Window],
        predict: Callable[[tuple[int, ...]], tuple[Window, ...]],
    ) -> Calibration:
        """The calibration after a fit at ``as_of``.

        ``counted``: the ``due`` windows, closed with their counts. An open
        window that starts after ``as_of`` is dropped: the fit runs on an
        earlier clock (``ltv fit --as-of`` in the past, a replay from
        scratch), and a window must not be judged on a history that ends
        before it began. Then every length without an open window gets a
        new prediction from this fit (``predict`` of those lengths), so each
        window is judged in turn and a fit adds at most one per length.
        """
        closed = tuple(counted)
        done = {(w.days, w.start) for w in closed}
        still_open = tuple(
            w for w in self.open if (w.days, w.start) not in done and w.start <= as_of
        )
        missing = tuple(d for d in WINDOWS if all(w.days != d for w in still_open))
        fresh = predict(missing) if missing else ()
        return Calibration(open=still_open + fresh, closed=_keep(self.closed + closed))

    def as_json(self) -> dict[str, Any]:
        return {
            "open": [w.as_json() for w in self.open],
            "closed": [w.as_json() for w in self.closed],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Calibration:
        return cls(
            open=tuple(Window.from_json(w) for w in doc.get("open", ())),
            closed=tuple(Window.from_json(w) for w in doc.get("closed", ())),
        )


def _keep(closed: tuple[Window, ...]) -> tuple[Window, ...]:
    """The last ``KEEP_CLOSED`` of each length, in their order."""
    kept: list[Window] = []
    per_length: Counter[int] = Counter()
    for window in reversed(closed):
        per_length[window.days] += 1
        if per_length[window.days] <= KEEP_CLOSED:
            kept.append(window)
    return tuple(reversed(kept))


def predict(
    family: Family,
    params: OrdersParams,
    columns: tuple[ArrayLike, ArrayLike, ArrayLike],
    recency: ArrayLike,
    first_month: ArrayLike,
    edges: RfmEdges,
    start: datetime,
    lengths: tuple[int, ...],
    *,
    version: str | None,
    orders_model: str,
) -> tuple[Window, ...]:
    """Open windows of ``lengths`` days from ``start``: the sum of the
    family's expected orders over the population, in total, per cohort and
    per segment.

    ``columns`` = (x, t_x, T) of every customer, ``recency`` its days since
    the last order, ``first_month`` the ``month_index`` of its first order.
    Many customers share (x, t_x, T) in whole days, so the model is
    evaluated once per distinct row and spread back to the customers; the
    breakdowns are then weighted counts over small integer codes.

    A length whose total is not finite (a degenerate fit, e.g. a -> 0,
    where the expectation breaks down) gets no window: there is nothing to
    judge, and the next fit predicts again.
    """
    x, t_x, T = (as_float_array(c) for c in columns)
    rows, inverse = np.unique(np.column_stack((x, t_x, T)), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    start_month = month_index(start)
    # Months from the first order to ``start`` (never negative: the
    # population bought by then), the older ones in one code.
    cohort_code = np.minimum(
        start_month - np.asarray(first_month, dtype=np.int64), COHORT_MONTHS + 1
    )
    segment_code = segment_indices(recency, x, edges)
    present_cohorts = np.bincount(cohort_code, minlength=COHORT_MONTHS + 2) > 0
    present_segments = np.bincount(segment_code, minlength=len(SEGMENTS)) > 0
    windows = []
    for days in lengths:
        per_row = family.expected_orders(params, float(days), rows[:, 0], rows[:, 1], rows[:, 2])
        per_customer = per_row[inverse]
        total = float(per_customer.sum())
        if not np.isfinite(total):
            continue
        by_cohort = np.bincount(cohort_code, weights=per_customer, minlength=COHORT_MONTHS + 2)
        by_segment = np.bincount(segment_code, weights=per_customer, minlength=len(SEGMENTS))
        predicted = Breakdown(
            total=total,
            by_cohort={
                cohort_label(start_month - code, start_month): float(by_cohort[code])
                for code in np.flatnonzero(present_cohorts).tolist()
            },
            by_segment={
                SEGMENTS[code].value: float(by_segment[code])
                for code in np.flatnonzero(present_segments).tolist()
            },
        )
        windows.append(Window(days, start, version, orders_model, edges, predicted))
    return tuple(windows)


@dataclass
class Count:
    """What one window's population did: repeat purchase days in the window, counted."""

    window: Window
    total: int = 0
    by_cohort: Counter[str] = field(default_factory=Counter)
    by_segment: Counter[str] = field(default_factory=Counter)

    def add(
        self,
        first_order_at: datetime,
        days: Collection[int],
        last_order_by: Callable[[datetime], datetime],
    ) -> None:
        """Fold one customer in.

        ``days``: the ordinals of its purchase days (its whole history);
        ``last_order_by(t)``: the time of its last live order at or before
        t. Only customers with a purchase day in the window need their
        segment at the window's start, so ``last_order_by`` is asked for
        those alone.
        """
        window = self.window
        if first_order_at > window.start:
            return
        first_day = window.first_day
        last_day = first_day + window.days
        n = sum(1 for d in days if first_day < d <= last_day)
        if not n:
            return
        last = last_order_by(window.start)
        frequency = sum(1 for d in days if d <= first_day) - 1
        score = rfm_score(days_since(window.start, last), frequency, 0.0, window.edges)
        self.total += n
        self.by_cohort[cohort_label(month_index(first_order_at), month_index(window.start))] += n
        self.by_segment[score.segment.value] += n

    def closed(self, counted_at: datetime) -> Window:
        """The window, judged."""
        actual = Breakdown(self.total, dict(self.by_cohort), dict(self.by_segment))
        return replace(self.window, actual=actual, counted_at=counted_at)
