"""CDNOW sample loader for the benchmarks (data ships in the lifetimes wheel).

Located through the import system without importing lifetimes' own modules,
which need pandas; only the text file is read.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import numpy.typing as npt

ORIGIN = np.datetime64("1997-01-01")
CALIBRATION_END_DAY = float((np.datetime64("1997-09-30") - ORIGIN).astype(np.float64))  # week 39
HOLDOUT_END_DAY = float((np.datetime64("1998-06-30") - ORIGIN).astype(np.float64))  # week 78


def load() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(customer id, day since 1997-01-01, dollar value) for all 6 919 rows."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install the test extra: pip install -e '.[test,bench]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "CDNOW_sample.txt"
    ids, days, values = [], [], []
    for line in path.read_text().splitlines():
        _, customer, date, _, amount = line.split()
        ids.append(int(customer))
        days.append(np.datetime64(f"{date[:4]}-{date[4:6]}-{date[6:]}"))
        values.append(float(amount))
    day_numbers = (np.array(days) - ORIGIN).astype(np.float64)
    return np.array(ids, dtype=np.int64), day_numbers, np.array(values)
