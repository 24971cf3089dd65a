"""Microseconds per single-customer streaming valuation (docs/valuation.md).

One valuation = P(alive) + expected orders over 365 days + Gamma-Gamma
expected spend + continuously discounted CLV, through the scalar fast path
:func:`ltv.clv.value_customer` with CDNOW-scale parameters expressed in days.

    .venv/bin/python bench/valuation.py
"""

from __future__ import annotations

import time

import numpy as np

from ltv.clv import value_customer
from ltv.gammagamma import GammaGammaParams
from ltv.mbgnbd import MBGNBDParams

# Published CDNOW MBG/NBD (per week) rescaled to days; Gamma-Gamma in dollars.
ORDERS = MBGNBDParams(r=0.525, alpha=6.183, a=0.891, b=1.614).rescale_time(7.0)
SPEND = GammaGammaParams(p=6.25, q=3.74, gamma=15.44)


def main() -> None:
    """Time a batch of varied customers, best of several rounds to drop noise."""
    rng = np.random.default_rng(7)
    n = 20_000
    x = rng.integers(0, 50, n).astype(float)
    age = rng.uniform(1.0, 3_000.0, n)
    recency = np.where(x > 0, age * rng.uniform(0.0, 1.0, n), 0.0)
    zbar = rng.uniform(5.0, 200.0, n)
    customers = list(zip(x.tolist(), recency.tolist(), age.tolist(), zbar.tolist(), strict=True))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for xi, ti, Ti, zi in customers:
            value_customer(ORDERS, SPEND, xi, ti, Ti, zi)
        best = min(best, time.perf_counter() - start)
    print(f"valuation: {best / n * 1e6:.1f} us per customer (best of 5 x {n} customers)")


if __name__ == "__main__":
    main()
