"""CDNOW holdout check: predicted vs actual repeat purchase days, weeks 40-78.

Calibration = weeks 1-39 (through 1997-09-30); models fitted in days; the
prediction for each customer is E[orders in the next 273 days | x, t_x, T]
(FHL 2005 figure 4 / table 2 compare the same quantity, in weeks). Prints
totals and a table by calibration frequency 0..7+, and writes
bench/holdout.png (needs the bench extra: matplotlib).

    .venv/bin/python bench/holdout.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _cdnow import CALIBRATION_END_DAY, HOLDOUT_END_DAY, load

from ltv import bgnbd, mbgnbd
from ltv.summary import summarise

BUCKETS = 8  # calibration frequency 0..6 and 7+


def main() -> None:
    """Fit on the calibration period, predict the holdout, compare, plot."""
    ids, days, values = load()
    cal = summarise(ids, days, values, CALIBRATION_END_DAY)
    full = summarise(ids, days, values, HOLDOUT_END_DAY)
    # Repeat purchase days in the holdout = distinct days through the end
    # minus distinct days through the calibration end (same customers).
    actual = full.x - cal.x
    horizon = HOLDOUT_END_DAY - CALIBRATION_END_DAY
    bucket = np.minimum(cal.x, BUCKETS - 1).astype(int)
    predictions = {}
    for name, module in (("BG/NBD", bgnbd), ("MBG/NBD", mbgnbd)):
        fit = module.fit(cal.x, cal.t_x, cal.T)
        predictions[name] = module.expected_orders(fit.params, horizon, cal.x, cal.t_x, cal.T)
        print(f"{name}: {fit.params} LL={fit.log_likelihood:.1f}")
    print(f"\nholdout repeat purchase days, weeks 40-78 ({len(cal.customer)} customers)")
    print(f"  actual  {actual.sum():8.1f}")
    for name, predicted in predictions.items():
        print(f"  {name:8s}{predicted.sum():8.1f}  ({predicted.sum() / actual.sum() - 1:+.1%})")
    header = "".join(f"{name:>10s}" for name in predictions)
    print(f"\nmean per customer by calibration frequency\n  x    n    actual{header}")
    rows = []
    for k in range(BUCKETS):
        members = bucket == k
        means = [float(p[members].mean()) for p in predictions.values()]
        rows.append((float(actual[members].mean()), means))
        label = f"{k}+" if k == BUCKETS - 1 else f"{k} "
        cells = "".join(f"{m:10.3f}" for m in means)
        print(f"  {label} {int(members.sum()):4d} {rows[-1][0]:9.3f}{cells}")
    _plot(rows, list(predictions), Path(__file__).with_name("holdout.png"))


def _plot(rows: list[tuple[float, list[float]]], names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positions = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(positions, [actual for actual, _ in rows], "k-o", label="actual")
    for i, name in enumerate(names):
        ax.plot(positions, [means[i] for _, means in rows], "--s", label=name)
    ax.set_xticks(positions, [str(k) for k in range(len(rows) - 1)] + [f"{len(rows) - 1}+"])
    ax.set_xlabel("repeat purchase days in weeks 1-39")
    ax.set_ylabel("mean repeat purchase days, weeks 40-78")
    ax.set_title("CDNOW holdout: conditional expectations")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
