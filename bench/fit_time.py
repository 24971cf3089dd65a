"""Wall time of the maximum-likelihood fits (the periodic fit job, docs/valuation.md).

CDNOW: 2 357 customers (calibration summaries, days). Synthetic: 1 000 000
customers drawn from MBG/NBD itself (``ltv.mbgnbd.simulate``, seed fixed) with
the CDNOW parameters in days and ages uniform over two years, plus Gamma-Gamma
spend on the repeat buyers.

    .venv/bin/python bench/fit_time.py
"""

from __future__ import annotations

import time

import numpy as np
from _cdnow import CALIBRATION_END_DAY, load

from ltv import bgnbd, gammagamma, mbgnbd
from ltv.summary import summarise

TRUTH = mbgnbd.MBGNBDParams(r=0.525, alpha=6.183, a=0.891, b=1.614).rescale_time(7.0)
SPEND = gammagamma.GammaGammaParams(p=6.25, q=3.74, gamma=15.44)


def _timed(label: str, fit: object) -> None:
    start = time.perf_counter()
    result = fit() if callable(fit) else fit
    elapsed = time.perf_counter() - start
    print(f"{label:38s} {elapsed:7.2f} s  {result}")


def main() -> None:
    """Print fit times on CDNOW and on a million synthetic customers."""
    ids, days, values = load()
    cal = summarise(ids, days, values, CALIBRATION_END_DAY)
    _timed("CDNOW 2357 BG/NBD", lambda: bgnbd.fit(cal.x, cal.t_x, cal.T))
    _timed("CDNOW 2357 MBG/NBD", lambda: mbgnbd.fit(cal.x, cal.t_x, cal.T))
    _timed("CDNOW 946 Gamma-Gamma", lambda: gammagamma.fit(cal.x, cal.zbar))

    rng = np.random.default_rng(20050101)
    n = 1_000_000
    T = rng.uniform(1.0, 730.0, n)
    x, t_x = mbgnbd.simulate(TRUTH, T, rng)
    nu = rng.gamma(SPEND.q, 1.0 / SPEND.gamma, n)
    repeat = np.maximum(x, 1.0)
    zbar = np.where(x > 0, rng.gamma(SPEND.p * repeat, 1.0 / nu) / repeat, 0.0)
    print(f"\nsynthetic truth: {TRUTH}, {SPEND}")
    _timed("synthetic 1M MBG/NBD", lambda: mbgnbd.fit(x, t_x, T))
    _timed("synthetic 1M BG/NBD", lambda: bgnbd.fit(x, t_x, T))
    _timed(f"synthetic {int((x > 0).sum())} Gamma-Gamma", lambda: gammagamma.fit(x, zbar))


if __name__ == "__main__":
    main()
