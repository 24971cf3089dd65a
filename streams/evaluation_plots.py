"""PNG figures of an ``ltv.evaluation.Evaluation`` (``ltv evaluate --out``).

matplotlib is imported inside ``write_plots`` only: importing ``streams``
stays cheap for the worker and every other command. The figures are drawn
on matplotlib's Agg canvas directly, without pyplot, so no global backend
is switched and no display is needed (servers, containers, CI).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ltv.evaluation import Evaluation

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def write_plots(result: Evaluation, out: Path) -> list[Path]:
    """Draw the three views of ``result`` into ``out`` (created if missing); the paths written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in DRAWINGS.items():
        fig = Figure(figsize=(7.5, 4.5))
        FigureCanvasAgg(fig)
        draw(fig, result)
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=100)
        paths.append(path)
    return paths


def _label(result: Evaluation, name: str) -> str:
    return f"{name} (chosen)" if name == result.chosen else name


def _frequency(fig: Figure, result: Evaluation) -> None:
    """FHL 2005 figure 4: conditional expectations by calibration frequency."""
    ax = fig.add_subplot()
    rows = result.frequency
    positions = np.arange(len(rows))
    ax.plot(positions, [r.actual for r in rows], "k-o", label="actual")
    for name in result.scores:
        ax.plot(positions, [r.predicted[name] for r in rows], "--s", label=_label(result, name))
    last = rows[-1].frequency
    ax.set_xticks(positions, [str(r.frequency) for r in rows[:-1]] + [f"{last}+"])
    ax.set_xlabel("repeat purchase days in the calibration period")
    ax.set_ylabel("mean repeat purchase days in the holdout")
    ax.set_title(f"Calibration vs {result.split.days:.0f}-day holdout, by frequency")
    ax.legend()


def _cumulative(fig: Figure, result: Evaluation) -> None:
    """FHL 2005 figure 2: cumulative repeat purchase days after the split."""
    ax = fig.add_subplot()
    days = np.arange(1, len(result.actual_cumulative) + 1)
    ax.plot(days, result.actual_cumulative, "k-", label="actual")
    for name, curve in result.predicted_cumulative.items():
        ax.plot(days, curve, "--", label=_label(result, name))
    ax.set_xlabel("days after the end of the calibration period")
    ax.set_ylabel("cumulative repeat purchase days")
    ax.set_title(f"Repeat purchase days of the {result.split.customers} calibration customers")
    ax.legend()


def _alive(fig: Figure, result: Evaluation) -> None:
    """P(alive) by frequency and recency. The one-time buyers' row is one cell
    wide (t_x = 0; the rest is NaN, blank), so its value is written beside it."""
    alive = result.alive
    ax = fig.add_subplot()
    image = ax.imshow(
        alive.values,
        origin="lower",
        aspect="auto",
        interpolation="nearest",
        vmin=0.0,
        vmax=1.0,
        cmap="viridis",
    )
    ax.text(2, 0, f"one-time buyers: {alive.values[0, 0]:.2f}", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label="P(alive)")
    ax.set_xlabel("recency t_x: days from first to last purchase")
    ax.set_ylabel("repeat purchase days x")
    ax.set_title(f"P(alive) under {alive.family}, first purchase {alive.T:.0f} days before")


#: The file each view is written to, in the order ``write_plots`` writes them.
DRAWINGS: dict[str, Callable[[Figure, Evaluation], None]] = {
    "frequency.png": _frequency,
    "cumulative.png": _cumulative,
    "p_alive.png": _alive,
}
