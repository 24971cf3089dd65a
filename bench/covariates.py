"""Do covariates help? Plain vs covariate BG/NBD, MBG/NBD and Pareto/NBD on UCI Online Retail.

Orders come from the backfill's own converter (``streams.order_lines`` with
the options of bench/online_retail.py); a customer's purchase days are the
London calendar days of their orders (several orders on a day are one
purchase, as everywhere in ltv). Calibration is 2010-12-01 to 2011-06-30
(``--calibration-end`` moves it), the holdout the rest to 2011-12-09 (162
days by default); only customers whose first
purchase is in the calibration period are scored. Covariates (ltv.covariates):

* country: the country on most of the customer's lines (read from the raw
  export; the converter carries no country), levels under 1% of the
  customers folded into the reference (United Kingdom) by ``design_of``;
* first-order value band: quartile of the customer's first purchase day's
  value among the calibration customers.

Per family and covariate set, fitted on the calibration summaries (collapsed
to distinct (x, t_x, T, z) rows with counts as weights): calibration LL;
holdout LL = sum over customers of LL(full-period summary) - LL(calibration
summary) at the calibration fit, the log-likelihood of what happened in the
holdout given each customer's calibration history; predicted vs actual
holdout repeat purchase days (total, % error, mean absolute error per
customer); the likelihood-ratio test against the plain fit (p-value; "kept"
when significant at 1%, i.e. what ``fit_with_fallback`` would use); fit seconds.

    .venv/bin/python bench/covariates.py [PATH] [--calibration-end 2011-06-30]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt
from online_retail import DEFAULT_PATH, line_format

from ltv import covariates
from ltv.covariates import Design, Family, design_of
from ltv.fitting import FloatArray
from ltv.summary import Summaries, summarise
from streams.backfill import open_text
from streams.order_lines import convert, zone

LONDON = zone("Europe/London")
ORIGIN = date(2010, 12, 1)
CALIBRATION_END = date(2011, 6, 30)
HOLDOUT_END = float((date(2011, 12, 9) - ORIGIN).days)
FAMILIES: tuple[Family, ...] = ("bgnbd", "mbgnbd", "paretonbd")
SETS: dict[str, tuple[str, ...]] = {
    "none": (),
    "country": ("country",),
    "country+band": ("country", "first_value_band"),
}


@dataclass(frozen=True)
class Population:
    """Calibration and full-period summaries of the calibration customers, and covariates."""

    cal: Summaries
    full: Summaries  # same customers, same order
    values: dict[str, list[str | None]]  # covariate name -> one value per customer

    def rows(self, names: tuple[str, ...]) -> list[tuple[str | None, ...]]:
        """Per customer, the values of the covariates ``names``."""
        return [tuple(self.values[n][i] for n in names) for i in range(len(self.cal.customer))]


def purchases(path: Path) -> tuple[npt.NDArray[np.int64], FloatArray, FloatArray]:
    """(customer id, day since 2010-12-01 in London, amount) of every converted purchase."""
    with open_text(path) as handle:
        conversion = convert(handle, line_format())
    ids, days, amounts = [], [], []
    for draft in conversion.drafts:
        if draft.kind != "purchase":
            continue
        ids.append(int(draft.body["customer_id"]))
        days.append((draft.at.astimezone(LONDON).date() - ORIGIN).days)
        amounts.append(float(draft.body["amount"]))
    return np.array(ids, dtype=np.int64), np.array(days, float), np.array(amounts)


def countries(path: Path) -> dict[int, str]:
    """Each customer's country: the one on most of their lines."""
    seen: dict[int, Counter[str]] = defaultdict(Counter)
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        for line in csv.DictReader(handle):
            customer = line["CustomerID"].strip()
            if customer:
                seen[int(customer)][line["Country"]] += 1
    return {c: counts.most_common(1)[0][0] for c, counts in seen.items()}


def population(path: Path, calibration_end: float) -> Population:
    ids, days, amounts = purchases(path)
    cal = summarise(ids, days, amounts, calibration_end)
    everyone = summarise(ids, days, amounts, HOLDOUT_END)
    at = np.searchsorted(everyone.customer, cal.customer)
    full = Summaries(
        cal.customer, everyone.x[at], everyone.t_x[at], everyone.T[at], everyone.zbar[at]
    )
    # Value of each customer's first purchase day (every order of that day).
    mine = np.isin(ids, cal.customer)
    ids, days, amounts = ids[mine], days[mine], amounts[mine]
    who = np.searchsorted(cal.customer, ids)
    first = days == (calibration_end - cal.T)[who]
    first_value = np.zeros(len(cal.customer))
    np.add.at(first_value, who[first], amounts[first])
    edges = np.quantile(first_value, [0.25, 0.5, 0.75])
    band = np.searchsorted(edges, first_value, side="right")
    country_of = countries(path)
    return Population(
        cal,
        full,
        {
            "country": [country_of.get(int(c)) for c in cal.customer],
            "first_value_band": [f"q{b + 1}" for b in band],
        },
    )


def collapse(
    columns: list[FloatArray],
) -> tuple[list[FloatArray], FloatArray]:
    """Distinct rows of the stacked columns, and how many customers share each."""
    stacked = np.column_stack(columns)
    rows, counts = np.unique(stacked, axis=0, return_counts=True)
    return [rows[:, j] for j in range(stacked.shape[1])], counts.astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument(
        "--calibration-end",
        type=date.fromisoformat,
        default=CALIBRATION_END,
        help=f"last day of the calibration period (default {CALIBRATION_END})",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    calibration_end = float((args.calibration_end - ORIGIN).days)
    pop = population(args.path, calibration_end)
    cal, full = pop.cal, pop.full
    horizon = HOLDOUT_END - calibration_end
    actual = full.x - cal.x
    print(
        f"{len(cal.customer)} calibration customers (first purchase by {args.calibration_end}), "
        f"holdout {horizon:.0f} days; actual holdout repeat purchase days {actual.sum():.0f}; "
        f"data prepared in {time.perf_counter() - started:.1f} s"
    )
    designs: dict[str, Design] = {
        name: design_of(names, pop.rows(names)) for name, names in SETS.items()
    }
    print(f"design columns (country+band): {', '.join(designs['country+band'].columns())}\n")
    header = (
        f"{'family':10s}{'covariates':14s}{'effects':>8s}{'cal LL':>11s}{'holdout LL':>12s}"
        f"{'predicted':>11s}{'error':>8s}{'MAE':>7s}{'LR p':>10s}{'kept':>6s}{'fit s':>7s}"
    )
    print(header)
    notes: list[str] = []
    for family in FAMILIES:
        plain_ll = 0.0
        for name, names in SETS.items():
            design = designs[name]
            Z = design.matrix(pop.rows(names))
            (x, t_x, T, *z_cols), weights = collapse([cal.x, cal.t_x, cal.T, *Z.T])
            Zd = np.column_stack(z_cols) if z_cols else np.zeros((len(x), 0))
            tick = time.perf_counter()
            result = covariates.fit(family, x, t_x, T, Zd, design, weights)
            seconds = time.perf_counter() - tick
            model = result.params
            holdout_ll = float(
                np.sum(
                    covariates.log_likelihood(model, full.x, full.t_x, full.T, Z)
                    - covariates.log_likelihood(model, cal.x, cal.t_x, cal.T, Z)
                )
            )
            predicted = covariates.expected_orders(model, horizon, cal.x, cal.t_x, cal.T, Z)
            error = predicted.sum() / actual.sum() - 1.0
            mae = float(np.mean(np.abs(predicted - actual)))
            notes.append(f"{family:10s}{name:14s}{_rounded(model)}")
            if not names:
                plain_ll = result.log_likelihood
                test, kept = "", ""
            else:
                p = covariates.likelihood_ratio_p_value(
                    plain_ll, result.log_likelihood, model.effects
                )
                test, kept = f"{p:.2g}", "yes" if p < 0.01 else "no"
            flag = "" if result.converged else " (not converged)"
            print(
                f"{family:10s}{name:14s}{model.effects:8d}{result.log_likelihood:11.1f}"
                f"{holdout_ll:12.1f}{predicted.sum():11.1f}{error:+8.1%}{mae:7.3f}"
                f"{test:>10s}{kept:>6s}{seconds:7.1f}{flag}"
            )
    print("\n" + "\n".join(notes))
    print(f"\ntotal {time.perf_counter() - started:.1f} s")


def _rounded(model: covariates.CovariateModel) -> str:
    """The base parameters, and the purchase effects g_p (exp(g_p) multiplies the mean rate)."""
    base = " ".join(f"{k}={v:.3g}" for k, v in model.base.as_dict().items())
    effects = ", ".join(
        f"{c} {g:+.2f}" for c, g in zip(model.design.columns(), model.purchase, strict=True)
    )
    return f"{base}; {effects}" if effects else base


if __name__ == "__main__":
    main()
