"""Scoring orders models on a holdout (ltv.holdout), against simulated purchase histories.

The oracle is the simulation: purchase times drawn from a model's own story
(written here, independently of the models' ``simulate`` helpers, because a
split needs the times, not just the summary at one date).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from ltv import holdout
from ltv.mbgnbd import MBGNBDParams
from ltv.orders import FAMILIES, OrdersParams
from ltv.paretonbd import ParetoNBDParams

CALIBRATION = 273.0  # days, CDNOW's 39 weeks
HOLDOUT = 273.0
PARETO = ParetoNBDParams(r=0.553, alpha=10.578, s=0.606, beta=11.669).rescale_time(7.0)
MBG = MBGNBDParams(r=0.525, alpha=6.183, a=0.891, b=1.614).rescale_time(7.0)


def pareto_times(rng: np.random.Generator, end: float) -> list[float]:
    """Repeat purchase times of one Pareto/NBD customer first buying at 0."""
    lam = rng.gamma(PARETO.r, 1.0 / PARETO.alpha)
    life = rng.exponential(1.0 / rng.gamma(PARETO.s, 1.0 / PARETO.beta))
    n = rng.poisson(lam * min(life, end))
    return sorted(rng.uniform(0.0, min(life, end), n).tolist())


def mbg_times(rng: np.random.Generator, end: float) -> list[float]:
    """Repeat purchase times of one MBG/NBD customer: a dropout coin after every purchase."""
    lam = rng.gamma(MBG.r, 1.0 / MBG.alpha)
    p = rng.beta(MBG.a, MBG.b)
    times: list[float] = []
    t = 0.0
    while rng.random() >= p:  # survives the purchase just made
        t += rng.exponential(1.0 / lam)
        if t > end:
            break
        times.append(t)
    return times


def split_of(histories: list[list[float]], cal: float, end: float) -> holdout.Split:
    """Summaries at ``cal`` and at ``end`` of customers who first bought at 0."""
    cols: list[list[float]] = [[] for _ in range(6)]
    for times in histories:
        before = [t for t in times if t <= cal]
        row = (
            len(before),
            before[-1] if before else 0.0,
            cal,
            len(times),
            times[-1] if times else 0.0,
            end,
        )
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return holdout.Split.of(*cols, days=end - cal)


@pytest.fixture(scope="module")
def pareto_split() -> tuple[holdout.Split, list[list[float]]]:
    rng = np.random.default_rng(17)
    histories = [pareto_times(rng, CALIBRATION + HOLDOUT) for _ in range(6000)]
    return split_of(histories, CALIBRATION, CALIBRATION + HOLDOUT), histories


def test_collapsed_rows_keep_every_customer(
    pareto_split: tuple[holdout.Split, list[list[float]]],
) -> None:
    split, histories = pareto_split
    assert split.customers == len(histories)
    in_holdout = sum(sum(1 for t in times if t > CALIBRATION) for times in histories)
    assert float(np.dot(split.weight, split.actual)) == in_holdout
    assert len(split.weight) < len(histories)  # collapsed: many one-time buyers share a row


def test_the_true_model_predicts_the_holdout(
    pareto_split: tuple[holdout.Split, list[list[float]]],
) -> None:
    """Conditional expectations of the model that generated the data add up
    to what happened (within sampling error)."""
    split, _ = pareto_split
    s = holdout.score(holdout.Plain(PARETO), split, calibration_log_likelihood=0.0, converged=True)
    assert s.error is not None and abs(s.error) < 0.08


def test_holdout_log_likelihood_is_the_log_density_of_what_followed() -> None:
    """For one customer, LL(end) - LL(split) against the density of the holdout
    events integrated over the posterior, computed by brute force."""
    params = PARETO
    # x=2 purchases by day 100 (last at 60), then one more at 150, observed to 200.
    split = holdout.Split.of([2], [60.0], [100.0], [3], [150.0], [200.0], days=100.0)
    s = holdout.score(holdout.Plain(params), split, calibration_log_likelihood=0.0, converged=True)
    # Brute force: the joint density of purchase times under (lambda, mu) is
    # lambda^x e^(-(lambda+mu) T) + (dying after t_x) terms; integrate both
    # histories over the gamma priors on a grid and take the ratio.
    # Log-spaced grids: d(lambda) = lambda du takes the priors' singularity at 0.
    u = np.linspace(math.log(1e-12), math.log(2.0), 3000)
    L, M = np.meshgrid(np.exp(u), np.exp(u), indexing="ij")
    prior = L**params.r * np.exp(-params.alpha * L) * M**params.s * np.exp(-params.beta * M)

    def density(x: int, t_x: float, T: float) -> float:
        alive = L**x * np.exp(-(L + M) * T)
        dead = L**x * M / (L + M) * (np.exp(-(L + M) * t_x) - np.exp(-(L + M) * T))
        return float(np.sum(prior * (alive + dead)))

    expected = math.log(density(3, 150.0, 200.0) / density(2, 60.0, 100.0))
    assert s.holdout_log_likelihood == pytest.approx(expected, abs=2e-3)


def test_choice_goes_by_holdout_log_likelihood_among_converged() -> None:
    def sc(ll: float, converged: bool = True) -> holdout.HoldoutScore:
        return holdout.HoldoutScore(0.0, ll, 1.0, 1.0, 0.0, converged)

    assert holdout.choose({"a": sc(-10.0), "b": sc(-5.0), "c": sc(-1.0, False)}) == "b"
    assert holdout.choose({"a": sc(-5.0), "b": sc(-5.0)}) == "a"
    assert holdout.choose({"a": sc(math.nan), "b": sc(-1.0, False)}) is None


@pytest.mark.parametrize(
    ("truth", "times"),
    [(PARETO, pareto_times), (MBG, mbg_times)],
    ids=["paretonbd", "mbgnbd"],
)
def test_fitting_each_family_and_choosing_prefers_the_generating_story(
    truth: OrdersParams, times: Callable[[np.random.Generator, float], list[float]]
) -> None:
    """Fitted on the calibration, the generating family scores a higher
    holdout log-likelihood than BG/NBD, whose one-time buyers never die."""
    rng = np.random.default_rng(5)
    histories = [times(rng, CALIBRATION + HOLDOUT) for _ in range(5000)]
    split = split_of(histories, CALIBRATION, CALIBRATION + HOLDOUT)
    scores = {}
    for name, family in FAMILIES.items():
        fitted = family.fit(split.x_cal, split.t_x_cal, split.T_cal, split.weight)
        scores[name] = holdout.score(
            holdout.Plain(fitted.params),
            split,
            calibration_log_likelihood=fitted.log_likelihood,
            converged=fitted.converged,
        )
    generating = next(n for n, f in FAMILIES.items() if f.params_type is type(truth))
    assert scores[generating].holdout_log_likelihood > scores["bgnbd"].holdout_log_likelihood
    assert holdout.choose(scores) != "bgnbd"


def test_holdout_length_is_at_most_two_thirds_of_the_history() -> None:
    assert holdout.holdout_days(900.0, 90.0) == 90.0
    assert holdout.holdout_days(546.0, 273.0) == 273.0  # CDNOW: 39 weeks against 39
    assert holdout.holdout_days(120.0, 90.0) == 80.0
    assert holdout.holdout_days(10.0, 90.0) == 0.0
