"""``ltv evaluate``: how each orders model does on a holdout of this deployment's history.

Every fit chooses its orders model on a holdout and stores only the scores
(``GET /model`` ``selection``). This command shows why: it scans the states
exactly as the fit job does and splits them by the same rule, with the same
functions (``streams.fit``: ``Population``, ``calibrate``,
``choose_on_holdout``), then prints the scores and the by-frequency table
and writes the three figures of ``ltv.evaluation`` as PNGs. It stores
nothing and takes no lock, so it can run beside the workers at any time,
e.g. to try another ``--holdout-days`` before changing LTV_FIT_HOLDOUT_DAYS.
"""

from __future__ import annotations

import sys
from pathlib import Path

import redis.exceptions

from ltv import evaluation
from ltv.formulas import ValueBasis
from state.model_store import Selection
from state.store.config import StoreConfig
from streams.evaluation_plots import write_plots
from streams.fit import (
    FitError,
    NoHoldout,
    Population,
    calibrate,
    choose_on_holdout,
    fit_orders_models,
    parse_as_of,
    scan_population,
)
from streams.settings import Settings

PROG = "ltv evaluate"


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def render(pop: Population, selection: Selection, result: evaluation.Evaluation) -> str:
    """The scores table, the choice, and the by-frequency table."""
    names = list(result.scores)
    lines = [
        f"as of {pop.as_of:%Y-%m-%d}, calibration through {pop.split_at:%Y-%m-%d}, "
        f"{pop.holdout_days}-day holdout: {result.split.customers} of {len(pop)} customers "
        "bought before the split",
        "",
        f"{'family':<10}{'holdout LL':>12}{'predicted':>11}{'actual':>9}{'error':>9}"
        f"{'MAE/cust':>10}  converged",
    ]
    for name in names:
        s = result.scores[name]
        error = "-" if s.error is None else f"{s.error:+.1%}"
        lines.append(
            f"{name:<10}{s.holdout_log_likelihood:12.1f}{s.predicted:11.1f}{s.actual:9.0f}"
            f"{error:>9}{s.mean_absolute_error:10.3f}  {'yes' if s.converged else 'no'}"
        )
    why = "highest holdout log-likelihood" if selection.by_holdout else selection.reason
    lines += [
        f"chosen: {selection.chosen} ({why})",
        "",
        "mean holdout repeat purchase days by calibration repeat purchase days",
        f"{'x':<4}{'customers':>10}{'actual':>9}" + "".join(f"{n:>11}" for n in names),
    ]
    last = result.frequency[-1].frequency
    for row in result.frequency:
        label = f"{row.frequency}+" if row.frequency == last else str(row.frequency)
        means = "".join(f"{row.predicted[n]:11.3f}" for n in names)
        lines.append(f"{label:<4}{row.customers:10d}{row.actual:9.3f}{means}")
    return "\n".join(lines)


async def evaluate_command(
    settings: Settings, as_of_text: str | None, holdout_days: int | None, out: Path
) -> int:
    """``ltv evaluate``; exit code 0 (done), 1 (nothing to evaluate or no model
    converged), 2 (bad arguments)."""
    try:
        as_of = parse_as_of(as_of_text)
    except ValueError as exc:
        return _fail(str(exc), 2)
    days = settings.fit_holdout_days if holdout_days is None else holdout_days
    if days < 1:
        return _fail(f"needs a holdout of at least 1 day, not {days} (--holdout-days N)", 2)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail(f"cannot write to --out {out}: {exc}", 2)
    pop = Population(as_of, ValueBasis(settings.value_basis), holdout_days=days)
    client = StoreConfig.from_url(settings.redis_url).async_client()
    try:
        await scan_population(client, settings, pop)
    except (redis.exceptions.RedisError, OSError) as exc:
        return _fail(f"Redis unavailable: {exc}", 1)
    finally:
        await client.aclose()
    if not len(pop):
        return _fail(f"no customer of {settings.app_id} has an order as of {as_of:%Y-%m-%d}", 1)
    try:
        calibration = calibrate(pop)
        selection = choose_on_holdout(pop, calibration, fit_orders_models(pop))
    except NoHoldout as exc:
        if exc.longest is None:
            return _fail(str(exc), 1)
        hint = f"try --holdout-days {exc.longest} or less" if exc.longest else "none fits"
        return _fail(f"{exc} (a holdout is at most two thirds of the history): {hint}", 1)
    except (FitError, ValueError) as exc:
        return _fail(f"fit failed: {exc}", 1)
    params = {name: fitted.params for name, fitted in calibration.fits.items()}
    result = evaluation.evaluate(
        calibration.split, params, selection.scores, selection.chosen, pop.holdout_per_day
    )
    print(render(pop, selection, result))
    for path in write_plots(result, out):
        print(f"wrote {path}")
    return 0 if selection.by_holdout else 1
