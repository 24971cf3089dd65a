"""The CDNOW 1/10 sample, the BTYD models' published benchmark (docs/valuation.md).

2 357 customers who first bought in Q1 1997, shipped inside the ``lifetimes``
wheel (a test dependency) and read straight from its package directory, so
that the checks do not depend on lifetimes' own modules importing.
Calibration = through 1997-09-30, the end of week 39, as in the papers.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ltv.summary import Summaries, summarise

CALIBRATION_END = np.datetime64("1997-09-30")
ORIGIN = np.datetime64("1997-01-01")

Rows = tuple[np.ndarray, np.ndarray, np.ndarray]


def datasets_dir() -> Path:
    spec = importlib.util.find_spec("lifetimes")
    assert spec is not None and spec.submodule_search_locations, "lifetimes is a test dependency"
    return Path(next(iter(spec.submodule_search_locations))) / "datasets"


def load_rows() -> Rows:
    """(customer id, day number since 1997-01-01, amount) of every transaction line."""
    ids, days, values = [], [], []
    for line in (datasets_dir() / "CDNOW_sample.txt").read_text().splitlines():
        _, customer, date, _, amount = line.split()
        ids.append(int(customer))
        days.append(np.datetime64(f"{date[:4]}-{date[4:6]}-{date[6:]}"))
        values.append(float(amount))
    day_numbers = (np.array(days) - ORIGIN).astype(np.float64)
    return np.array(ids), day_numbers, np.array(values)


def calibration_summaries(rows: Rows) -> Summaries:
    """Summaries in days as of the end of the calibration period."""
    ids, days, values = rows
    as_of = float((CALIBRATION_END - ORIGIN).astype(np.float64))
    return summarise(ids, days, values, as_of)
