"""Transaction log -> BTYD customer summaries (docs/valuation.md), vectorised.

BTYD models count *purchase days*, not order lines: several orders on one day
are one transaction (Fader, Hardie & Lee 2005 treat CDNOW that way), so
x = distinct purchase days - 1, t_x = last - first purchase day, T = as_of -
first purchase day, and zbar = mean value of the repeat days (the first day
is excluded, as the Gamma-Gamma fit uses repeat purchases only). Zero-value
days still count as purchases. Used by batch fits and the CDNOW checks; the
stream keeps the same quantities incrementally.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ltv.fitting import ArrayLike, FloatArray, as_float_array


@dataclass(frozen=True, slots=True)
class Summaries:
    """Per-customer BTYD inputs, aligned with ``customer`` (sorted ascending)."""

    customer: npt.NDArray[np.int64]
    x: FloatArray
    t_x: FloatArray
    T: FloatArray
    zbar: FloatArray


def summarise(customer: ArrayLike, day: ArrayLike, value: ArrayLike, as_of: float) -> Summaries:
    """Summaries as of ``as_of`` from transaction rows (customer id, day, value).

    Rows after ``as_of`` are ignored, as are customers whose first purchase is
    after it. ``day`` is any numeric time (days in the service's models).
    """
    ids = np.asarray(customer, dtype=np.int64)
    days = as_float_array(day)
    values = as_float_array(value)
    keep = days <= as_of
    ids, days, values = ids[keep], days[keep], values[keep]
    order = np.lexsort((days, ids))
    ids, days, values = ids[order], days[order], values[order]
    new_day = np.ones(len(ids), dtype=bool)
    new_day[1:] = (ids[1:] != ids[:-1]) | (days[1:] != days[:-1])
    starts = np.flatnonzero(new_day)
    day_ids, day_times = ids[starts], days[starts]
    day_values = np.add.reduceat(values, starts) if len(starts) else values[:0]
    new_customer = np.ones(len(day_ids), dtype=bool)
    new_customer[1:] = day_ids[1:] != day_ids[:-1]
    first = np.flatnonzero(new_customer)
    last = np.append(first[1:], len(day_ids)) - 1
    n_days = (last - first + 1).astype(np.float64)
    x = n_days - 1.0
    total = np.add.reduceat(day_values, first) if len(first) else day_values[:0]
    repeat_total = total - day_values[first]
    zbar = np.divide(repeat_total, x, out=np.zeros_like(x), where=x > 0)
    return Summaries(
        customer=day_ids[first],
        x=x,
        t_x=day_times[last] - day_times[first],
        T=as_of - day_times[first],
        zbar=zbar,
    )
