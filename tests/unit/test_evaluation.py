"""The holdout views of ``ltv evaluate`` (ltv.evaluation) against independent oracles.

Oracles: a hand-made population whose holdout purchases are counted by
hand, and CDNOW recomputed per customer from the raw transaction rows
(distinct purchase days before and after 1997-09-30) with the families'
functions on uncollapsed arrays, never through ``Split`` or ``Population``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta

import numpy as np
import pytest
from cdnow import ORIGIN_TIME, cdnow_states, load_rows, table_value
from test_model_fit import T0, history

from ltv import evaluation
from ltv.formulas import ValueBasis
from ltv.orders import FAMILIES
from streams.fit import (
    HoldoutFits,
    NoHoldout,
    Population,
    calibrate,
    choose_on_holdout,
    fit_orders_models,
    select_orders_model,
)

SPLIT = 272  # 1997-09-30, in days since 1997-01-01
END = 545  # 1998-06-30
HOLDOUT = END - SPLIT


def test_population_counts_holdout_repeat_days_per_day() -> None:
    """Split at day 60 of a 90-day history: day offsets counted by hand."""
    pop = Population(T0 + timedelta(days=90), ValueBasis.REVENUE, holdout_days=30)
    pop.add_all(
        table_value(s)
        for s in (
            history("a", (0, "5"), (10, "5"), (61, "5"), (61.5, "5"), (75, "5")),
            history("b", (20, "5"), (90, "5")),
            history("c", (60, "5"), (70, "5")),  # first bought on the split day: not scored
            history("d", (65, "5")),  # first bought in the holdout: not scored
            history("e", (5, "5")),
        )
    )
    counts = list(pop.holdout_per_day)
    assert len(counts) == 30 and sum(counts) == 3
    assert counts[0] == 1 and counts[14] == 1 and counts[29] == 1  # days 61, 75, 90
    assert list(pop.x_cal) == [1, 0, 0]
    split = calibrate(pop).split
    assert split.customers == 3 and float(np.dot(split.weight, split.actual)) == 3


def test_no_holdout_says_how_long_one_may_be() -> None:
    pop = Population(T0 + timedelta(days=90), ValueBasis.REVENUE, holdout_days=70)
    pop.add(table_value(history("a", (0, "5"), (50, "5"))))
    with pytest.raises(NoHoldout, match="90-day history is too short") as info:
        calibrate(pop)
    assert info.value.longest == 60
    with pytest.raises(NoHoldout, match="no holdout configured"):
        calibrate(Population(pop.as_of, ValueBasis.REVENUE))
    # A clock before stored orders: T counts them, but nobody bought before the split.
    early = Population(T0 + timedelta(days=40), ValueBasis.REVENUE, holdout_days=30)
    early.add(table_value(history("a", (20, "5"), (90, "5"))))
    with pytest.raises(NoHoldout, match="no customer bought before the split") as info:
        calibrate(early)
    assert info.value.longest is None
    assert select_orders_model(early, {}).reason == str(info.value)


def per_customer_oracle() -> tuple[dict[int, tuple[int, int, int]], dict[int, int]]:
    """From the rows: per customer (x, t_x, T) at the split, and holdout purchase days."""
    ids, days, _ = load_rows()
    distinct: dict[int, set[int]] = defaultdict(set)
    for customer, day in zip(ids.tolist(), days.tolist(), strict=True):
        distinct[customer].add(int(day))
    cal: dict[int, tuple[int, int, int]] = {}
    later: dict[int, int] = {}
    for customer, ds in distinct.items():
        before = sorted(d for d in ds if d <= SPLIT)
        cal[customer] = (len(before) - 1, before[-1] - before[0], SPLIT - before[0])
        later[customer] = sum(1 for d in ds if SPLIT < d <= END)
    return cal, later


@pytest.fixture(scope="module")
def cdnow() -> tuple[Population, HoldoutFits, evaluation.Evaluation]:
    pop = Population(ORIGIN_TIME + timedelta(days=END), ValueBasis.REVENUE, holdout_days=HOLDOUT)
    pop.add_all(table_value(s) for s in cdnow_states(END))
    calibration = calibrate(pop)
    selection = choose_on_holdout(pop, calibration, fit_orders_models(pop))
    params = {name: fit.params for name, fit in calibration.fits.items()}
    result = evaluation.evaluate(
        calibration.split, params, selection.scores, selection.chosen, pop.holdout_per_day
    )
    return pop, calibration, result


def test_cdnow_by_frequency_matches_the_rows(
    cdnow: tuple[Population, HoldoutFits, evaluation.Evaluation],
) -> None:
    _, calibration, result = cdnow
    cal, later = per_customer_oracle()
    customers = sorted(cal)
    x = np.array([cal[c][0] for c in customers], dtype=np.float64)
    t_x = np.array([cal[c][1] for c in customers], dtype=np.float64)
    T = np.array([cal[c][2] for c in customers], dtype=np.float64)
    actual = np.array([later[c] for c in customers], dtype=np.float64)
    assert actual.sum() == 1882
    assert len(result.frequency) == 8
    for row in result.frequency:
        members = x >= 7 if row.frequency == 7 else x == row.frequency
        assert row.customers == int(members.sum())
        assert row.actual == pytest.approx(actual[members].mean(), rel=1e-12)
        for name, fitted in calibration.fits.items():
            family = FAMILIES[name]
            expected = family.expected_orders(fitted.params, HOLDOUT, x, t_x, T)
            assert row.predicted[name] == pytest.approx(expected[members].mean(), rel=1e-9)


def test_cdnow_cumulative_curves(
    cdnow: tuple[Population, HoldoutFits, evaluation.Evaluation],
) -> None:
    _, calibration, result = cdnow
    cal, later = per_customer_oracle()
    ids, days, _ = load_rows()
    scored = {(i, int(d)) for i, d in zip(ids.tolist(), days.tolist(), strict=True) if d > SPLIT}
    by_day = [sum(1 for _, d in scored if d <= SPLIT + t) for t in (1, 100, HOLDOUT)]
    assert [result.actual_cumulative[t - 1] for t in (1, 100, HOLDOUT)] == by_day
    assert by_day[-1] == sum(later.values()) == 1882
    assert np.all(np.diff(result.actual_cumulative) >= 0)
    customers = sorted(cal)
    x, t_x, T = (np.array([cal[c][i] for c in customers], dtype=np.float64) for i in range(3))
    for name, curve in result.predicted_cumulative.items():
        assert len(curve) == HOLDOUT and np.all(np.diff(curve) > 0)
        assert curve[-1] == pytest.approx(result.scores[name].predicted, rel=1e-12)
        params = calibration.fits[name].params
        at_100 = FAMILIES[name].expected_orders(params, 100.0, x, t_x, T).sum()
        assert curve[99] == pytest.approx(at_100, rel=1e-9)


def test_cdnow_alive_matrix_is_the_chosen_familys_p_alive(
    cdnow: tuple[Population, HoldoutFits, evaluation.Evaluation],
) -> None:
    _, calibration, result = cdnow
    alive = result.alive
    assert alive.family == result.chosen and alive.T == SPLIT  # first buyers of 1 January
    family = FAMILIES[result.chosen]
    params = calibration.fits[result.chosen].params
    rows, columns = alive.values.shape
    assert columns == SPLIT + 1
    x_cal = np.array([c[0] for c in per_customer_oracle()[0].values()])
    assert np.mean(x_cal <= rows - 1) >= 0.99 > np.mean(x_cal <= rows - 2)
    for x, t_x in ((0, 0), (1, 0), (1, 272), (3, 150), (rows - 1, 200)):
        expected = family.p_alive_scalar(params, float(x), float(t_x), float(SPLIT))
        assert alive.values[x, t_x] == pytest.approx(expected, rel=1e-9)
    assert math.isnan(alive.values[0, 1]) and np.all(np.isnan(alive.values[0, 1:]))
    assert np.all((alive.values[1:] >= 0) & (alive.values[1:] <= 1))
