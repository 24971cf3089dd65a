"""The model-fit job (docs/valuation.md): every customer's state in Redis -> fitted parameters.

Steps: HSCAN every partition hash of the ``customers`` table of this app id
(``state.store.keys``), decode each state (``state.codec``), reduce it to the
fit inputs as of a clock, fit BG/NBD, MBG/NBD and Gamma-Gamma by maximum
likelihood (``ltv``), derive RFM quintile edges, the subscription churn rate
and the population's purchase gap, and store the result
(``state.model_store``). Memory stays bounded: a customer costs a handful of
8-byte slots in typed arrays while scanning, never a Python object.

The same job runs on demand (``ltv fit``) and inside the worker group on a
timer (``install``), one run at a time per app id under a Redis lock. The
worker runs it as a child process (``ltv fit``, ``fit_in_child``): a fit
is minutes of Python and numpy on a large or odd population, and in a thread
it would hold the interpreter lock the unit of work needs (a worker draining
a backlog lost a quarter of its rate to its own fits). The child stores the
model; the worker then reloads it like any other stored version.

Definitions:

* fit inputs: ``CustomerState.btyd(as_of)`` in days; ``zbar`` = value of the
  repeat purchase days / x on the configured value basis. Customers without
  a live order, or whose first order is after ``as_of``, are left out.
  ``as_of`` should not precede the stored orders: the state keeps aggregates,
  not a history to rewind.
* RFM edges: quintiles of days since the last order, of x and of the
  customer's historic value (the inputs ``ltv.valuation`` scores).
* subscription monthly churn: subscribers whose subscription ended (by
  ``as_of``) divided by the subscriber-months observed, each subscriber
  counted from the first charge to the end of the subscription or ``as_of``
  (months of 365.25/12 days). That is the maximum-likelihood constant monthly
  hazard with still-active subscribers as censored lifetimes. None while no
  subscriber-time has been observed.
* population gap: days between repeat purchase days over all repeat buyers,
  sum(t_x) / sum(x); the churn heuristic's fallback gap.
* subscription retention (sBG, ``ltv.sbg``): per billing interval, and per
  plan of an interval with enough subscribers of its own, each subscriber's
  renewals by ``as_of`` (whole periods since the first charge, to the end of
  the subscription when it ended) and whether it still runs (censored).
  Fitted only where some subscription ended; a fit that fails or does not
  converge is left out and its subscribers keep the BTYD value.

A fit fails, and the stored parameters stay as they were with the failure
recorded, when nobody has an order, nobody bought twice (no Gamma-Gamma
input), an optimiser does not converge, or anything raises.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import faust
import numpy as np
import numpy.typing as npt

from ltv import covariates, gammagamma, holdout, sbg
from ltv.acquisition import COVARIATES, FirstOrder, OrdersCovariates, band_edges, levels
from ltv.calibration import month_index
from ltv.covariates import design_of, without_aliases
from ltv.fitting import FitResult, FloatArray
from ltv.formulas import ValueBasis, historic_ltv
from ltv.orders import FAMILIES
from ltv.rfm import RfmEdges, quintile_edges, segment_counts
from ltv.risk import RiskLevel
from ltv.sbg import SBGParams
from ltv.valuation import completed_periods, retention_key
from state.codec import CodecError
from state.customer import CustomerState
from state.envelope import customer_state
from state.model_store import (
    RETENTION_PREFIX,
    CovariateChoice,
    FittedModel,
    ModelRecord,
    Selection,
    acquire_lock,
    load_model,
    release_lock,
    save_model,
)
from state.store.config import StoreConfig
from state.store.keys import KeyLayout
from streams.calibration import Tally, calibrated, export
from streams.metrics import METRICS
from streams.processing import Processor
from streams.settings import Settings

log = logging.getLogger(__name__)

TABLE = "customers"
DAYS_PER_MONTH = 365.25 / 12
SCAN_COUNT = 1000
# Longer than a fit of a million customers takes, short enough that a worker
# killed mid-fit holds up the next one only briefly.
LOCK_TTL = timedelta(minutes=30)
RELOAD_SECONDS = 5.0
#: Seconds between looks at whether a fit is due (``due`` decides).
FIT_TICK_SECONDS = 10.0
#: First retry of a failed fit; later ones double up to the fit interval.
RETRY_FIRST = timedelta(seconds=15)
#: A table this many times the size of the fitted population is refitted at once.
REFIT_GROWTH = 2
#: Exit status of ``ltv fit`` when another fit holds the lock (EX_TEMPFAIL).
FIT_BUSY = 75


class FitError(RuntimeError):
    """The population cannot be fitted (the message says why)."""


def subscription_exposure(s: CustomerState, as_of: datetime) -> tuple[bool, float] | None:
    """(ended by ``as_of``, subscriber-months observed) of one customer; None: never subscribed."""
    sub = s.subscription
    if sub is None or sub.started_at > as_of:
        return None
    ended_at = s.subscription_ended_at
    ended = s.subscription_churned and ended_at is not None and ended_at <= as_of
    end = ended_at if ended and ended_at is not None else as_of
    months = max(0.0, (end - sub.started_at).total_seconds()) / 86400 / DAYS_PER_MONTH
    return ended, months


def monthly_churn(ended: int, months: float) -> float | None:
    """Ended subscriptions per subscriber-month (see the module docstring)."""
    return ended / months if months > 0 else None


@dataclass
class Population:
    """Fit inputs of every customer as of ``as_of``, one typed array per column."""

    as_of: datetime
    basis: ValueBasis
    #: Days held out at the end of the history to choose the orders model on
    #: (``ltv.holdout``); 0: no choice.
    holdout_days: int = 0
    x: array[float] = field(default_factory=lambda: array("d"))
    t_x: array[float] = field(default_factory=lambda: array("d"))
    T: array[float] = field(default_factory=lambda: array("d"))
    zbar: array[float] = field(default_factory=lambda: array("d"))
    recency: array[float] = field(default_factory=lambda: array("d"))
    monetary: array[float] = field(default_factory=lambda: array("d"))
    risk: Counter[str] = field(default_factory=Counter)
    subscribers_ended: int = 0
    subscriber_months: float = 0.0
    #: Per ``retention_key``: each subscriber's renewals and whether it runs.
    renewals: dict[str, tuple[array[float], array[float]]] = field(default_factory=dict)
    skipped: int = 0
    corrupt: int = 0
    #: Customers who bought before the split: (x, t_x, T) at the split, and
    #: their row in the columns above (the same customer at ``as_of``).
    x_cal: array[float] = field(default_factory=lambda: array("d"))
    t_x_cal: array[float] = field(default_factory=lambda: array("d"))
    T_cal: array[float] = field(default_factory=lambda: array("d"))
    cal_rows: array[int] = field(default_factory=lambda: array("q"))
    #: Each customer's first order (``ltv.acquisition``): the first purchase
    #: day's value, and its (channel, category, subscription) as a code into
    #: ``first_kinds``, which holds the few distinct ones once.
    first_value: array[float] = field(default_factory=lambda: array("d"))
    first_kind: array[int] = field(default_factory=lambda: array("i"))
    first_kinds: dict[tuple[str | None, str | None, bool], int] = field(default_factory=dict)

    #: Repeat purchase days of those customers per day of the holdout:
    #: ``holdout_per_day[k]`` counts the days ``split_day + 1 + k``, through
    #: ``as_of`` (``ltv evaluate`` plots the cumulative curve). One slot per
    #: day, not per customer, so a million customers cost nothing extra.
    holdout_per_day: array[int] = field(init=False)
    #: ``ltv.calibration.month_index`` of each customer's first order (its cohort).
    first_month: array[int] = field(default_factory=lambda: array("q"))
    #: Counts the calibration windows this fit closes (streams.calibration).
    calibration: Tally = field(default_factory=Tally)

    def __post_init__(self) -> None:
        self.holdout_per_day = array("q", bytes(8 * self.holdout_days))

    def __len__(self) -> int:
        return len(self.x)

    def first_orders(self, rows: Iterable[int]) -> list[FirstOrder]:
        """The first orders of the customers in ``rows``."""
        kinds = list(self.first_kinds)
        return [
            FirstOrder(kinds[k][0], self.first_value[i], kinds[k][1], kinds[k][2])
            for i in rows
            for k in (self.first_kind[i],)
        ]

    @property
    def split_at(self) -> datetime:
        """End of the calibration period."""
        return self.as_of - timedelta(days=self.holdout_days)

    @property
    def split_day(self) -> int:
        """Ordinal of the last day of the calibration period."""
        return self.as_of.toordinal() - self.holdout_days

    def add(self, raw: bytes) -> None:
        """Fold one table value in (undecodable values are counted, not fatal)."""
        try:
            s = customer_state(raw)
        except CodecError:
            self.corrupt += 1
            return
        self.calibration.add(s)
        exposure = subscription_exposure(s, self.as_of)
        if exposure is not None:
            self.subscribers_ended += exposure[0]
            self.subscriber_months += exposure[1]
            self._add_renewals(s, ended=exposure[0])
        summary = s.btyd(self.as_of)
        if summary is None or s.last_order_at is None or s.first_order_at is None:
            self.skipped += 1
            return
        if s.first_order_at > self.as_of:
            self.skipped += 1
            return
        if s.risk is not None:
            self.risk[s.risk] += 1
        margin = self.basis is ValueBasis.MARGIN
        repeat = summary.repeat_margin if margin else summary.repeat_net
        self.x.append(summary.x)
        self.t_x.append(summary.t_x)
        self.T.append(summary.T)
        self.zbar.append(float(repeat) / summary.x if summary.x > 0 else 0.0)
        self.recency.append(max(0, (self.as_of - s.last_order_at).days))
        self.monetary.append(float(historic_ltv(s.net, s.margin, self.basis)))
        first = s.first_order()
        kind = (first.channel, first.category, first.subscription)
        self.first_kind.append(self.first_kinds.setdefault(kind, len(self.first_kinds)))
        self.first_value.append(first.value)
        self.first_month.append(month_index(s.first_order_at))
        if self.holdout_days:
            self._add_calibration(s)

    def _add_calibration(self, s: CustomerState) -> None:
        """The customer's summary at the split, when it had bought before it."""
        split = self.split_day
        days = sorted(day for day in s.days if day <= split)
        if not days or days[0] >= split:
            return
        self.x_cal.append(len(days) - 1)
        self.t_x_cal.append(days[-1] - days[0])
        self.T_cal.append(split - days[0])
        self.cal_rows.append(len(self.x) - 1)
        for day in s.days:
            # Days after as_of (a clock before the stored orders) are not in
            # the holdout; ``btyd`` cannot leave them out of x (no rewind).
            if split < day <= split + self.holdout_days:
                self.holdout_per_day[day - split - 1] += 1

    def _add_renewals(self, s: CustomerState, *, ended: bool) -> None:
        sub = s.subscription
        assert sub is not None
        until = s.subscription_ended_at if ended and s.subscription_ended_at else self.as_of
        renewals = completed_periods(sub.started_at, until, sub.interval)
        for key in (retention_key(sub.interval), retention_key(sub.interval, sub.plan_id)):
            counts, active = self.renewals.setdefault(key, (array("d"), array("d")))
            counts.append(renewals)
            active.append(0.0 if ended else 1.0)

    def add_all(self, values: Iterable[bytes]) -> None:
        for raw in values:
            self.add(raw)


def _column(values: array[float]) -> FloatArray:
    return np.frombuffer(values, dtype=np.float64)


def _fitted(result: FitResult[Any]) -> FittedModel:
    return FittedModel(
        params=result.params.as_dict(),
        log_likelihood=result.log_likelihood,
        converged=result.converged,
        iterations=result.iterations,
        n=result.n,
    )


def fit_population(pop: Population, fitted_at: datetime) -> ModelRecord:
    """Fit every model to ``pop`` (CPU-bound; raises FitError when it cannot)."""
    if not len(pop):
        raise FitError(f"no customer has an order as of {pop.as_of.isoformat()}")
    x, t_x, zbar = _column(pop.x), _column(pop.t_x), _column(pop.zbar)
    if not np.any((x > 0) & (zbar > 0)):
        raise FitError("no repeat buyer with a positive repeat value: nothing to fit spend on")
    results = fit_orders_models(pop)
    results["gammagamma"] = gammagamma.fit(x, zbar)
    selection = select_orders_model(pop, results)
    orders_covariates = None
    if selection.by_holdout:
        orders_covariates, choice = choose_covariates(pop, selection.chosen, results)
        selection = replace(selection, covariates=choice)
    # Only the chosen family values customers: the others are reported for
    # comparison, so their failure to converge (typically a ridge towards
    # a, b -> inf when the data show no dropout) is recorded, not fatal.
    failed = [name for name in (selection.chosen, "gammagamma") if not results[name].converged]
    if failed:
        raise FitError(f"did not converge: {', '.join(failed)}")
    spend = results["gammagamma"].params
    if spend.q <= 1.0:
        raise FitError(
            f"Gamma-Gamma q = {spend.q:.3g} <= 1: mean spend undefined (too few repeat buyers?)"
        )
    repeat = x > 0
    edges = RfmEdges(
        recency=quintile_edges(_column(pop.recency)),
        frequency=quintile_edges(x),
        monetary=quintile_edges(_column(pop.monetary)),
    )
    results.update(fit_retention(pop.renewals))
    record = ModelRecord(
        fitted_at=fitted_at,
        as_of=pop.as_of,
        n_customers=len(pop),
        models={name: _fitted(r) for name, r in results.items()},
        rfm_edges=edges,
        population={
            "churn_risk": {level.value: pop.risk[level.value] for level in RiskLevel},
            "segments": segment_counts(_column(pop.recency), x, edges),
        },
        subscription_monthly_churn=monthly_churn(pop.subscribers_ended, pop.subscriber_months),
        population_gap_days=float(t_x[repeat].sum() / x[repeat].sum()) if repeat.any() else None,
        orders_model=selection.chosen,
        selection=selection,
        covariates=orders_covariates,
    )
    return record.with_version()


#: The family that values customers when no holdout can choose one: MBG/NBD
#: lets one-time buyers' P(alive) fall with age, unlike BG/NBD.
DEFAULT_ORDERS_MODEL = "mbgnbd"


class NoHoldout(FitError):
    """The population has no holdout to choose the orders model on (the message says why)."""

    def __init__(self, reason: str, longest: int | None = None) -> None:
        super().__init__(reason)
        #: When the history is too short: the longest holdout it allows
        #: (``ltv.holdout.holdout_days``; 0: none at all).
        self.longest = longest


@dataclass(frozen=True, slots=True)
class HoldoutFits:
    """A population split at ``as_of - holdout``, and every family fitted on the
    calibration period: what the fit chooses by and ``ltv evaluate`` shows."""

    split_at: datetime
    split: holdout.Split
    fits: dict[str, FitResult[Any]]


def fit_orders_models(pop: Population) -> dict[str, FitResult[Any]]:
    """Every family of ``ltv.orders`` fitted on the whole history of ``pop``."""
    x, t_x, T = _column(pop.x), _column(pop.t_x), _column(pop.T)
    # In whole days many customers share (x, t_x, T): fit the distinct rows,
    # weighted by their counts (same likelihood, far fewer evaluations).
    rows, counts = np.unique(np.column_stack((x, t_x, T)), axis=0, return_counts=True)
    ux, ut, uT = rows[:, 0], rows[:, 1], rows[:, 2]
    return {name: family.fit(ux, ut, uT, counts) for name, family in FAMILIES.items()}


def _holdout_split(pop: Population, picked: IntArray, Z: FloatArray | None = None) -> holdout.Split:
    """The split of the customers who bought before it, at positions ``picked``
    among them: their summaries at the split and at ``as_of`` (and design rows)."""
    rows = np.frombuffer(pop.cal_rows, dtype=np.int64)[picked]
    return holdout.Split.of(
        _column(pop.x_cal)[picked],
        _column(pop.t_x_cal)[picked],
        _column(pop.T_cal)[picked],
        _column(pop.x)[rows],
        _column(pop.t_x)[rows],
        _column(pop.T)[rows],
        float(pop.holdout_days),
        Z,
    )


def calibrate(pop: Population) -> HoldoutFits:
    """Split ``pop`` at ``as_of - holdout_days`` and fit every family on the
    calibration period; raises NoHoldout when none is configured or the
    history is shorter than ``ltv.holdout.holdout_days`` allows."""
    if not pop.holdout_days:
        raise NoHoldout("no holdout configured")
    span = float(_column(pop.T).max()) if len(pop) else 0.0
    longest = holdout.holdout_days(span, pop.holdout_days)
    if longest < pop.holdout_days:
        raise NoHoldout(
            f"a {span:.0f}-day history is too short for a {pop.holdout_days}-day holdout",
            int(longest),
        )
    if not len(pop.cal_rows):
        # Only when as_of precedes stored orders: T, and so the span, counts them.
        raise NoHoldout(f"no customer bought before the split at {pop.split_at:%Y-%m-%d}")
    split = _holdout_split(pop, np.arange(len(pop.cal_rows)))
    fits = {
        name: family.fit(split.x_cal, split.t_x_cal, split.T_cal, split.weight)
        for name, family in FAMILIES.items()
    }
    return HoldoutFits(pop.split_at, split, fits)


def choose_on_holdout(
    pop: Population, calibration: HoldoutFits, full: Mapping[str, FitResult[Any]]
) -> Selection:
    """Score every calibration fit on the holdout and choose (``ltv.holdout``);
    only families whose fit on the whole history (``full``) converged may be chosen."""
    scores = {
        name: holdout.score(
            holdout.Plain(fitted.params),
            calibration.split,
            calibration_log_likelihood=fitted.log_likelihood,
            converged=fitted.converged and full[name].converged,
        )
        for name, fitted in calibration.fits.items()
    }
    chosen = holdout.choose(scores)
    return Selection(
        chosen or DEFAULT_ORDERS_MODEL,
        split_at=calibration.split_at,
        holdout_days=pop.holdout_days,
        customers=calibration.split.customers,
        scores=scores,
        reason=None if chosen else "no candidate converged on the calibration period",
    )


#: Customers a covariate fit runs on at most. Its likelihood costs one plain
#: evaluation per distinct design row, and its gradient one likelihood per
#: parameter (4 + 3 per design column), so it works on an evenly spaced
#: sample of the scan; maximum likelihood on a sample this size pins effects
#: of a few percent of the customers down well.
COVARIATE_SAMPLE = 50_000


IntArray = npt.NDArray[np.int64]


def _sample(n: int, at_most: int) -> IntArray:
    """Evenly spaced positions of at most ``at_most`` of ``n`` rows (all when fewer)."""
    return np.linspace(0, n - 1, min(n, at_most)).astype(np.int64) if n else np.zeros(0, np.int64)


def choose_covariates(
    pop: Population, family: str, full: Mapping[str, FitResult[Any]]
) -> tuple[OrdersCovariates | None, CovariateChoice]:
    """Whether the chosen family values better with the first order's covariates.

    On the calibration period (a sample of it, ``COVARIATE_SAMPLE``) the
    family is fitted with and without covariates; the covariate model is used
    only when the likelihood-ratio test finds signal (else it only fits
    noise) and it scores a higher holdout log-likelihood than the plain fit on
    the same customers. It is then fitted again on the whole history.
    """
    cal_rows = np.frombuffer(pop.cal_rows, dtype=np.int64)
    sample = _sample(len(cal_rows), COVARIATE_SAMPLE)
    rows = cal_rows[sample]
    firsts = pop.first_orders(rows.tolist())
    edges = band_edges([f.value for f in firsts])
    values = [levels(f, edges) for f in firsts]
    candidate = design_of(COVARIATES, values)
    design = without_aliases(candidate, candidate.matrix(values))
    if not design.columns():
        return None, CovariateChoice(family, reason="no covariate level is common enough")
    split = _holdout_split(pop, sample, design.matrix(values))
    name = cast(covariates.Family, family)
    fits = covariates.fit_with_fallback(
        name, split.x_cal, split.t_x_cal, split.T_cal, split.Z, design, split.weight
    )
    plain = holdout.score(
        holdout.Plain(fits.plain.params),
        split,
        calibration_log_likelihood=fits.plain.log_likelihood,
        converged=fits.plain.converged,
    )
    scored = holdout.score(
        holdout.WithCovariates(fits.covariate.params),
        split,
        calibration_log_likelihood=fits.covariate.log_likelihood,
        converged=fits.covariate.converged,
    )
    choice = CovariateChoice(
        family,
        customers=split.customers,
        columns=design.columns(),
        p_value=fits.p_value,
        plain=plain,
        scored=scored,
    )
    if not fits.covariate.converged:
        return None, replace(choice, reason="the covariate fit did not converge")
    if not fits.uses_covariates:
        return None, replace(choice, reason=f"no signal (likelihood-ratio p = {fits.p_value:.3g})")
    if not scored.holdout_log_likelihood > plain.holdout_log_likelihood:
        return None, replace(choice, reason="no better on the holdout than without covariates")
    everyone = _sample(len(pop), COVARIATE_SAMPLE)
    Z = design.matrix([levels(f, edges) for f in pop.first_orders(everyone.tolist())])
    table = np.column_stack(
        [_column(pop.x)[everyone], _column(pop.t_x)[everyone], _column(pop.T)[everyone], Z]
    )
    distinct, counts = np.unique(table, axis=0, return_counts=True)
    fitted = covariates.fit(
        name,
        distinct[:, 0],
        distinct[:, 1],
        distinct[:, 2],
        distinct[:, 3:],
        design,
        counts,
        start=full[family],
    )
    if not fitted.converged:
        return None, replace(choice, reason="the fit on the whole history did not converge")
    return OrdersCovariates(fitted.params, edges), replace(choice, used=True)


def select_orders_model(pop: Population, full: Mapping[str, FitResult[Any]]) -> Selection:
    """The fit's choice of orders model: ``calibrate``, then ``choose_on_holdout``.
    Without a holdout (none configured, or a history too short for one) the
    default family is kept, and why is said."""
    try:
        calibration = calibrate(pop)
    except NoHoldout as exc:
        return Selection(
            DEFAULT_ORDERS_MODEL,
            split_at=pop.split_at if pop.holdout_days else None,
            holdout_days=pop.holdout_days,
            reason=str(exc),
        )
    return choose_on_holdout(pop, calibration, full)


#: Subscribers a plan needs for a retention fit of its own (else its interval's serves).
MIN_PLAN_SUBSCRIBERS = 50


def fit_retention(
    renewals: Mapping[str, tuple[array[float], array[float]]],
) -> dict[str, FitResult[SBGParams]]:
    """sBG fits (``RETENTION_PREFIX`` + key) of every group where some
    subscription ended; a plan's own only with ``MIN_PLAN_SUBSCRIBERS``.
    Groups whose fit does not converge are left out: no ended subscription
    or no heterogeneity has no finite answer, and the BTYD value stays."""
    out: dict[str, FitResult[SBGParams]] = {}
    for key, (counts, active) in sorted(renewals.items()):
        n = _column(counts)
        alive = _column(active)
        if "|" in key and len(n) < MIN_PLAN_SUBSCRIBERS:
            continue
        if alive.all():
            continue
        result = sbg.fit(n, alive)
        if result.converged:
            out[RETENTION_PREFIX + key] = result
    return out


async def scan_population(client: Any, settings: Settings, pop: Population) -> None:
    """HSCAN every partition of the table into ``pop``, decoding each page as it comes.

    Decoding holds this process's interpreter: the worker runs its fits in a
    child process (``fit_in_child``), so nothing else here waits on it.
    """
    layout = KeyLayout(settings.app_id, TABLE)
    for partition in range(settings.partitions):
        key = layout.data_key(partition)
        cursor = 0
        while True:
            cursor, page = await client.hscan(key, cursor, count=SCAN_COUNT)
            pop.add_all(page.values())
            if not cursor:
                break


@dataclass(frozen=True, slots=True)
class FitOutcome:
    """What one run did: the stored record, its error, or that another run held the lock."""

    record: ModelRecord | None
    error: str | None = None
    busy: bool = False
    seconds: float = 0.0
    population: Population | None = None


async def run_fit(client: Any, settings: Settings, as_of: datetime) -> FitOutcome:
    """Scan, fit and store once under the lock; a failure keeps the old parameters."""
    token = uuid.uuid4().hex
    if not await acquire_lock(client, settings.app_id, token, int(LOCK_TTL.total_seconds() * 1000)):
        return FitOutcome(None, busy=True)
    started = time.perf_counter()
    try:
        previous = await load_model(client, settings.app_id) or ModelRecord()
        pop = Population(
            as_of,
            ValueBasis(settings.value_basis),
            holdout_days=settings.fit_holdout_days,
            calibration=Tally.due(previous.calibration, as_of),
        )
        try:
            await scan_population(client, settings, pop)
            if not len(pop):
                # A new deployment: nothing to fit yet, and nothing has failed.
                log.info("model fit skipped: no customer has an order yet")
                return FitOutcome(None, "no customer has an order yet", population=pop)
            record = fit_population(pop, datetime.now(UTC))
            record = calibrated(record, previous.calibration, pop)
        except Exception as exc:  # any failure keeps the last good model
            error = f"{type(exc).__name__}: {exc}"
            log.warning("model fit failed, keeping version %s: %s", previous.version, error)
            METRICS.model_fit_failures.inc()
            record = previous.failed(error, datetime.now(UTC))
            await save_model(client, settings.app_id, record)
            return FitOutcome(record, error, seconds=time.perf_counter() - started, population=pop)
        await save_model(client, settings.app_id, record)
        elapsed = time.perf_counter() - started
        log.info("model %s fitted on %d customers in %.2f s", record.version, len(pop), elapsed)
        return FitOutcome(record, seconds=elapsed, population=pop)
    finally:
        await release_lock(client, settings.app_id, token)


def retry_delay(failures: int, interval: timedelta) -> timedelta:
    """How long after its ``failures``-th failure in a row a fit is tried again.

    Doubling from ``RETRY_FIRST``: a young shop's first fits often fail for
    too few repeat buyers, and each retry sees more of them, so waiting a
    whole ``interval`` would keep a new deployment without predictions for
    an hour; a population that keeps failing is not refitted every tick.
    """
    doubled: timedelta = RETRY_FIRST * 2 ** min(max(0, failures - 1), 30)
    return min(interval, doubled)


def due(
    record: ModelRecord | None,
    now: datetime,
    interval: timedelta,
    customers: int | None = None,
) -> bool:
    """Whether the periodic fit should run now.

    Yes when no fit was ever attempted; after a failure, once its retry
    delay has passed; after a success, once ``interval`` has passed or
    when the table holds ``REFIT_GROWTH`` times the customers the model was
    fitted on (``customers``: None when unknown), so that a model fitted on
    the first customers of a backfill does not value the rest for an hour.
    """
    if record is None:
        return True
    fitted, failed = record.fitted_at, record.failed_at
    if failed is not None and (fitted is None or failed > fitted):
        return now - failed >= retry_delay(record.failures, interval)
    if fitted is None:
        return True
    grown = customers is not None and customers >= REFIT_GROWTH * max(1, record.n_customers)
    return grown or now - fitted >= interval


async def count_customers(client: Any, settings: Settings) -> int:
    """Customers stored in the table of this app id (one pipelined HLEN per partition)."""
    layout = KeyLayout(settings.app_id, TABLE)
    pipe = client.pipeline(transaction=False)
    for partition in range(settings.partitions):
        pipe.hlen(layout.data_key(partition))
    return sum(int(n) for n in await pipe.execute())


@dataclass
class ModelInForce:
    """The model a worker values with, reloaded whenever the stored version changes."""

    processor: Processor
    record: ModelRecord = field(default_factory=ModelRecord)

    def apply(self, stored: ModelRecord | None) -> bool:
        """Adopt ``stored``; True when its version differs from the one in force."""
        if stored is None:
            return False
        old = self.record
        self.record = stored
        if stored.version == old.version:
            return False
        snapshot = stored.snapshot()
        self.processor.model = snapshot
        if snapshot is not None:
            METRICS.model_info.clear()
            chosen_by = "holdout" if stored.selection and stored.selection.by_holdout else "default"
            METRICS.model_info.labels(snapshot.name, snapshot.version, chosen_by).set(1)
            _export_scores(stored.selection)
        if stored.fitted_at is not None:
            METRICS.model_fit_timestamp.set(stored.fitted_at.timestamp())
        for level, n in stored.population.get("churn_risk", {}).items():
            METRICS.customers.labels(level).set(n)
        for segment, n in stored.population.get("segments", {}).items():
            METRICS.segment_customers.labels(segment).set(n)
        export(stored.calibration)
        log.info("model version %s in force (was %s)", stored.version, old.version)
        return True


def _export_scores(selection: Selection | None) -> None:
    """The holdout figures of every candidate of the fit in force, as gauges."""
    METRICS.model_holdout_log_likelihood.clear()
    METRICS.model_holdout_error.clear()
    if selection is None:
        return
    scores = dict(selection.scores)
    choice = selection.covariates
    if choice is not None and choice.scored is not None:
        scores[f"{choice.family}+covariates"] = choice.scored
    for candidate, score in scores.items():
        METRICS.model_holdout_log_likelihood.labels(candidate).set(score.holdout_log_likelihood)
        if score.error is not None:
            METRICS.model_holdout_error.labels(candidate).set(score.error)


def install(app: faust.App, settings: Settings, processor: Processor) -> ModelInForce:
    """Attach the periodic fit and the model reload timers to the worker's app."""
    client = StoreConfig.from_url(settings.redis_url).async_client()
    model = ModelInForce(processor)
    interval = timedelta(seconds=settings.fit_interval)

    @app.timer(interval=RELOAD_SECONDS)
    async def reload_model() -> None:
        """Pick up a version stored by any worker or by ``ltv fit``."""
        try:
            model.apply(await load_model(client, settings.app_id))
        except Exception:  # Redis away: keep the model in force, try again next tick
            log.exception("model reload failed; version %s stays in force", model.record.version)

    @app.timer(interval=min(settings.fit_interval, FIT_TICK_SECONDS))
    async def periodic_fit() -> None:
        """Fit when ``due`` says so (one worker at a time, under the fit lock),
        in a child process (``fit_in_child``)."""
        now = datetime.now(UTC)
        try:
            record = await load_model(client, settings.app_id)
            customers = await count_customers(client, settings)
            if not due(record, now, interval, customers):
                return
            status = await fit_in_child(processor.clock(now), LOCK_TTL.total_seconds())
            stored = await load_model(client, settings.app_id)
        except Exception:  # Redis away: next tick
            log.exception("periodic model fit could not run")
            return
        if status not in (0, FIT_BUSY):
            # The fit failed (and recorded why in the stored document), or
            # the process died or was killed before it could.
            log.warning("model fit process ended with status %s", status)
            METRICS.model_fit_failures.inc()
        model.apply(stored)

    return model


async def fit_in_child(as_of: datetime, timeout: float) -> int | None:
    """Run ``ltv fit --as-of AS_OF --wait 0`` as a child process with this
    process's environment (so its settings); return its exit status.

    0: it stored a model, or found no customer to fit yet; ``FIT_BUSY``:
    another fit held the lock; 1: the fit failed (the stored document
    records why); None: killed after ``timeout`` seconds. Its output goes
    to the worker's. A cancelled caller kills it: no fit outlives its worker.
    """
    child = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "streams.cli", "fit"),
        *("--as-of", as_of.isoformat(), "--wait", "0"),
    )
    try:
        return await asyncio.wait_for(child.wait(), timeout)
    except TimeoutError:
        log.warning("model fit process killed after %.0f s", timeout)
        return None
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


def parse_as_of(text: str | None) -> datetime:
    """``--as-of``: YYYY-MM-DD (midnight UTC) or an ISO 8601 time with offset; None: now."""
    if text is None:
        return datetime.now(UTC)
    value = datetime.fromisoformat(text)
    if len(text) == 10:
        return value.replace(tzinfo=UTC)
    if value.tzinfo is None:
        raise ValueError(f"--as-of {text!r} needs an offset, e.g. {text}Z")
    return value.astimezone(UTC)


async def fit_command(settings: Settings, as_of_text: str | None, *, wait: float) -> int:
    """``ltv fit``: one run now (waiting up to ``wait`` s for a running one); exit code."""
    try:
        as_of = parse_as_of(as_of_text)
    except ValueError as exc:
        print(f"ltv fit: {exc}", file=sys.stderr)
        return 2
    client = StoreConfig.from_url(settings.redis_url).async_client()
    deadline = time.monotonic() + wait
    try:
        outcome = await run_fit(client, settings, as_of)
        while outcome.busy and time.monotonic() < deadline:
            await asyncio.sleep(1.0)  # the lock has a TTL, not a release notification
            outcome = await run_fit(client, settings, as_of)
    finally:
        await client.aclose()
    if outcome.busy:
        print(f"ltv fit: another fit of {settings.app_id} is still running", file=sys.stderr)
        return FIT_BUSY
    if outcome.record is None:
        # A new deployment: nothing has failed, there is just nothing to fit yet.
        print(f"ltv fit: nothing to fit yet ({outcome.error}); stored model unchanged")
        return 0
    if outcome.error is not None:
        print(f"ltv fit: failed, stored model unchanged: {outcome.error}", file=sys.stderr)
        return 1
    record = outcome.record
    print(
        f"ltv fit: version {record.version}, {record.n_customers} customers, "
        f"as of {as_of.isoformat()}, {outcome.seconds:.2f} s"
    )
    for name, fitted in record.models.items():
        params = ", ".join(f"{k}={v:.6g}" for k, v in fitted.params.items())
        print(f"  {name}: {params}, log-likelihood {fitted.log_likelihood:.1f}")
    print(f"  subscription monthly churn: {record.subscription_monthly_churn}")
    return 0
