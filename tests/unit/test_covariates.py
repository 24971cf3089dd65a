"""Time-invariant covariates (ltv.covariates).

Oracles: the plain models' functions evaluated customer by customer with
parameters scaled by hand as the Fader & Hardie (2007) note prescribes, and
simulations from the plain models' own generative stories with known
per-group parameters, whose recovery is judged against the sampling error
the likelihood's curvature implies (a Wald test), not against a fixed band.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import chi2

from ltv import betageo, covariates, paretonbd
from ltv.betageo import BetaGeoParams
from ltv.bgnbd import BGNBDParams
from ltv.covariates import CovariateModel, Design, Family, design_of
from ltv.fitting import FloatArray
from ltv.mbgnbd import MBGNBDParams
from ltv.paretonbd import ParetoNBDParams

CHANNEL = Design(("channel",), (("ads", "referral"),))
GROUPS = (["web"], ["ads"], ["referral"])  # web is the reference level

TRUTH: dict[Family, CovariateModel] = {
    "bgnbd": CovariateModel(
        "bgnbd",
        BGNBDParams(0.8, 40.0, 0.8, 3.0),
        CHANNEL,
        (0.5, -0.4),
        ((0.5, -0.3), (-0.4, 0.3)),
    ),
    "mbgnbd": CovariateModel(
        "mbgnbd",
        MBGNBDParams(0.8, 40.0, 0.8, 3.0),
        CHANNEL,
        (0.5, -0.4),
        ((0.5, -0.3), (-0.4, 0.3)),
    ),
    "paretonbd": CovariateModel(
        "paretonbd",
        ParetoNBDParams(0.8, 40.0, 0.7, 200.0),
        CHANNEL,
        (0.5, -0.4),
        ((0.6, -0.5),),
    ),
}
FAMILIES: tuple[Family, ...] = ("bgnbd", "mbgnbd", "paretonbd")


def scaled_by_hand(model: CovariateModel, z: tuple[float, ...]) -> BetaGeoParams | ParetoNBDParams:
    """The note's per-customer parameters, written out independently of params_for."""
    zv = np.array(z)
    alpha = model.base.alpha * math.exp(-float(np.dot(model.purchase, zv)))
    if isinstance(model.base, ParetoNBDParams):
        beta = model.base.beta * math.exp(-float(np.dot(model.dropout[0], zv)))
        return ParetoNBDParams(model.base.r, alpha, model.base.s, beta)
    a = model.base.a * math.exp(float(np.dot(model.dropout[0], zv)))
    b = model.base.b * math.exp(float(np.dot(model.dropout[1], zv)))
    return type(model.base)(model.base.r, alpha, a, b)


def simulate_groups(
    model: CovariateModel, per_group: int, seed: int
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(x, t_x, T, Z) of ``per_group`` customers per channel, drawn from the plain models."""
    rng = np.random.default_rng(seed)
    xs, txs, Ts, Zs = [], [], [], []
    for values in GROUPS:
        z = model.design.row(values)
        params = scaled_by_hand(model, z)
        T = rng.uniform(200.0, 500.0, per_group)
        if isinstance(params, ParetoNBDParams):
            x, t_x = paretonbd.simulate(params, T, rng)
        else:
            x, t_x = betageo.simulate(params, T, rng)
        xs.append(x)
        txs.append(t_x)
        Ts.append(T)
        Zs.append(np.tile(z, (per_group, 1)))
    return np.concatenate(xs), np.concatenate(txs), np.concatenate(Ts), np.concatenate(Zs)


def plain_ll(params: BetaGeoParams | ParetoNBDParams, x: float, t_x: float, T: float) -> float:
    if isinstance(params, ParetoNBDParams):
        return float(paretonbd.log_likelihood(params, x, t_x, T))
    return float(betageo.log_likelihood(params, x, t_x, T))


def as_vector(model: CovariateModel) -> FloatArray:
    """log of the positive parameters, then the effects: the scale the fit searches on."""
    return np.concatenate(
        [np.log(list(model.base.as_dict().values())), model.purchase, *model.dropout]
    )


def from_vector(like: CovariateModel, v: FloatArray) -> CovariateModel:
    width = len(like.purchase)
    effects = v[4:].reshape(-1, width)
    return CovariateModel(
        like.family,
        type(like.base)(*np.exp(v[:4])),
        like.design,
        tuple(effects[0]),
        tuple(tuple(row) for row in effects[1:]),
    )


def wald_statistic(
    fitted: CovariateModel,
    truth: CovariateModel,
    data: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
) -> float:
    """(fit - truth)' I (fit - truth), I the observed information by central differences.

    Asymptotically chi-square with as many degrees of freedom as parameters
    when the fit is consistent, whatever the sampling error of each parameter
    (a and b of the BG family are far less well determined than alpha).
    """
    x, t_x, T, Z = data
    centre = as_vector(fitted)

    def nll(v: FloatArray) -> float:
        return -float(covariates.log_likelihood(from_vector(fitted, v), x, t_x, T, Z).sum())

    k, h = len(centre), 1e-3
    info = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            info[i, j] = info[j, i] = (
                nll(centre + ei + ej)
                - nll(centre + ei - ej)
                - nll(centre - ei + ej)
                + nll(centre - ei - ej)
            ) / (4 * h * h)
    gap = centre - as_vector(truth)
    return float(gap @ info @ gap)


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_effects_give_the_plain_likelihood(family: Family) -> None:
    truth = TRUTH[family]
    x, t_x, T, Z = simulate_groups(truth, 200, seed=1)
    plain = CovariateModel.plain(family, truth.base, CHANNEL)
    got = covariates.log_likelihood(plain, x, t_x, T, Z)
    want = [plain_ll(truth.base, *row) for row in zip(x, t_x, T, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_per_customer_functions_are_the_plain_ones_with_scaled_parameters(
    family: Family,
) -> None:
    truth = TRUTH[family]
    x, t_x, T, Z = simulate_groups(truth, 50, seed=2)
    rng = np.random.default_rng(3)
    order = rng.permutation(len(x))  # groups interleaved, as a real population
    x, t_x, T, Z = x[order], t_x[order], T[order], Z[order]
    horizon = rng.uniform(10.0, 300.0, len(x))
    ll = covariates.log_likelihood(truth, x, t_x, T, Z)
    alive = covariates.p_alive(truth, x, t_x, T, Z)
    expected = covariates.expected_orders(truth, horizon, x, t_x, T, Z)
    for i in range(len(x)):
        params = scaled_by_hand(truth, tuple(Z[i]))
        if isinstance(params, ParetoNBDParams):
            want_alive = paretonbd.p_alive(params, x[i], t_x[i], T[i])
            want_expected = paretonbd.expected_orders(params, horizon[i], x[i], t_x[i], T[i])
        else:
            want_alive = betageo.p_alive(params, x[i], t_x[i], T[i])
            want_expected = betageo.expected_orders(params, horizon[i], x[i], t_x[i], T[i])
        assert ll[i] == pytest.approx(plain_ll(params, x[i], t_x[i], T[i]), rel=1e-12)
        assert alive[i] == pytest.approx(float(want_alive), rel=1e-12)
        assert expected[i] == pytest.approx(float(want_expected), rel=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_params_for_scales_the_base_as_documented(family: Family) -> None:
    truth = TRUTH[family]
    for values in (*GROUPS, ["unknown"], [None]):
        z = CHANNEL.row(values)
        got = truth.params_for(z)
        assert type(got) is type(truth.base)
        assert got.as_dict() == pytest.approx(scaled_by_hand(truth, z).as_dict(), rel=1e-14)
    assert truth.params_for((0.0, 0.0)) == truth.base
    assert truth.params_for([1.0, 0.0]) is truth.params_for((1.0, 0.0))  # memoised
    with pytest.raises(ValueError, match="columns"):
        truth.params_for((1.0,))


@pytest.mark.parametrize("family", FAMILIES)
def test_fit_recovers_simulated_groups(family: Family) -> None:
    truth = TRUTH[family]
    data = simulate_groups(truth, 2000, seed=20070101)
    result = covariates.fit(family, *data, CHANNEL)
    assert result.converged
    assert result.n == len(data[0])
    fitted = result.params
    # Every effect's sign, and the groups' ordering, is the simulated one.
    assert np.sign(fitted.purchase).tolist() == np.sign(truth.purchase).tolist()
    k = len(as_vector(truth))
    assert wald_statistic(fitted, truth, data) < chi2.ppf(0.999, k)


def test_weights_are_counts_of_identical_rows() -> None:
    truth = TRUTH["mbgnbd"]
    x, t_x, T, Z = simulate_groups(truth, 300, seed=4)
    counts = np.random.default_rng(5).integers(1, 4, len(x))
    weighted = covariates.fit("mbgnbd", x, t_x, T, Z, CHANNEL, counts)
    repeated = covariates.fit(
        "mbgnbd",
        np.repeat(x, counts),
        np.repeat(t_x, counts),
        np.repeat(T, counts),
        np.repeat(Z, counts, axis=0),
        CHANNEL,
    )
    assert weighted.n == counts.sum()
    assert weighted.log_likelihood == pytest.approx(repeated.log_likelihood, rel=1e-9)
    np.testing.assert_allclose(
        as_vector(weighted.params), as_vector(repeated.params), rtol=1e-3, atol=1e-3
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_signal_is_kept(family: Family) -> None:
    truth = TRUTH[family]
    data = simulate_groups(truth, 1000, seed=6)
    choice = covariates.fit_with_fallback(family, *data, CHANNEL)
    assert choice.uses_covariates
    assert choice.model == choice.covariate.params
    assert choice.covariate.log_likelihood >= choice.plain.log_likelihood


@pytest.mark.parametrize("family", FAMILIES)
def test_no_signal_falls_back_to_the_plain_fit(family: Family) -> None:
    truth = TRUTH[family]
    same = CovariateModel.plain(family, truth.base, CHANNEL)
    data = simulate_groups(same, 1000, seed=7)
    choice = covariates.fit_with_fallback(family, *data, CHANNEL)
    assert not covariates.likelihood_ratio_significant(
        choice.plain.log_likelihood, choice.covariate.log_likelihood, choice.model.effects
    )
    assert not choice.uses_covariates
    assert choice.model.base == choice.plain.params
    assert choice.model.purchase == (0.0, 0.0)
    assert all(g == 0.0 for effects in choice.model.dropout for g in effects)
    # The fallback is the plain fit itself: same likelihood on the data.
    x, t_x, T, Z = data
    total = float(covariates.log_likelihood(choice.model, x, t_x, T, Z).sum())
    assert total == pytest.approx(choice.plain.log_likelihood, rel=1e-12)


def test_likelihood_ratio_test_is_the_chi_square_tail() -> None:
    # 2 * 5.0 = 10 on 2 df: p = exp(-5) = 0.0067 (the chi-square(2) tail is exp(-x/2)).
    assert covariates.likelihood_ratio_p_value(-100.0, -95.0, 2) == pytest.approx(math.exp(-5.0))
    assert covariates.likelihood_ratio_significant(-100.0, -95.0, 2, level=0.01)
    assert not covariates.likelihood_ratio_significant(-100.0, -95.0, 2, level=0.005)
    assert not covariates.likelihood_ratio_significant(-100.0, -101.0, 2)  # a worse fit
    assert not covariates.likelihood_ratio_significant(-100.0, -50.0, 0)  # nothing to test


def test_design_folds_rare_levels_into_the_most_frequent() -> None:
    values = (
        [["uk", "low"]] * 60
        + [["de", "high"]] * 25
        + [["fr", "high"]] * 14
        + [["nl", None]] * 1  # 1% share, below min_share 0.02
    )
    design = design_of(("country", "band"), values, min_share=0.02)
    assert design.levels == (("de", "fr"), ("high",))  # nl folded; band reference: low
    assert design.columns() == ("country=de", "country=fr", "band=high")
    assert design.row(["nl", "low"]) == (0.0, 0.0, 0.0)


def test_design_reference_is_the_most_frequent_level() -> None:
    values = [["uk"]] * 5 + [["de"]] * 3 + [["fr"]] * 2 + [[None]] * 10
    design = design_of(("country",), values, min_share=0.0)
    assert design.levels == (("de", "fr"),)
    assert design.row(["uk"]) == (0.0, 0.0)
    assert design.row(["de"]) == (1.0, 0.0)
    assert design.row(["fr"]) == (0.0, 1.0)


def test_design_keeps_at_most_max_levels_reference_included() -> None:
    values = [[c] for c, n in zip("abcdef", (9, 8, 7, 6, 5, 4), strict=True) for _ in range(n)]
    design = design_of(("k",), values, min_share=0.0, max_levels=3)
    assert design.levels == (("b", "c"),)
    assert design.row(["d"]) == (0.0, 0.0)


def test_unknown_and_missing_values_are_the_reference_row() -> None:
    design = Design(("country", "band"), (("de", "fr"), ("q2", "q3", "q4")))
    reference = (0.0,) * 5
    assert design.row(["uk", "q1"]) == reference
    assert design.row([None, None]) == reference
    assert design.row(["atlantis", "q9"]) == reference
    assert design.row(["fr", None]) == (0.0, 1.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="2 covariate values"):
        design.row(["de"])


def test_matrix_rows_are_the_rows() -> None:
    design = Design(("country", "band"), (("de", "fr"), ("q2", "q3", "q4")))
    values: list[list[str | None]] = [["de", "q3"], ["uk", None], ["fr", "q4"], [None, "q2"]]
    matrix = design.matrix(values)
    assert matrix.shape == (4, 5)
    for row, v in zip(matrix, values, strict=True):
        assert tuple(row) == design.row(v)
    assert design.matrix([]).shape == (0, 5)
    nothing_kept = Design(("country",), ((),))
    assert nothing_kept.matrix([["uk"], [None]]).shape == (2, 0)


def test_json_round_trips() -> None:
    design = Design(("country", "band"), (("de", "fr"), ("q2",)))
    assert Design.from_json(json.loads(json.dumps(design.as_json()))) == design
    for family in FAMILIES:
        model = TRUTH[family]
        text = json.dumps(model.as_json())
        back = CovariateModel.from_json(json.loads(text))
        assert back == model
        assert type(back.base) is type(model.base)
        assert back.params_for((1.0, 0.0)) == model.params_for((1.0, 0.0))


def test_model_rejects_effects_that_do_not_match_the_design() -> None:
    base = TRUTH["bgnbd"].base
    with pytest.raises(ValueError, match="purchase effect"):
        CovariateModel("bgnbd", base, CHANNEL, (0.1,), ((0.0, 0.0), (0.0, 0.0)))
    with pytest.raises(ValueError, match="2 dropout effects"):
        CovariateModel("bgnbd", base, CHANNEL, (0.0, 0.0), ((0.0, 0.0),))
    with pytest.raises(ValueError, match="own type"):
        CovariateModel("mbgnbd", base, CHANNEL, (0.0, 0.0), ((0.0, 0.0), (0.0, 0.0)))


def test_a_level_that_picks_out_the_customers_of_an_earlier_one_is_folded() -> None:
    """A first category only subscriptions have, beside "first order was a
    subscription", carries no effect of its own: it folds into the reference."""
    rng = np.random.default_rng(9)
    rows: list[tuple[str | None, ...]] = []
    for _ in range(2000):
        subscribes = rng.random() < 0.2
        category = "plan" if subscribes and rng.random() < 0.98 else str(rng.choice(["a", "b"]))
        rows.append((category, "yes" if subscribes else "no"))
    design = covariates.design_of(("category", "subscription"), rows)
    assert {"category=plan", "subscription=yes"} <= set(design.columns())
    kept = covariates.without_aliases(design, design.matrix(rows))
    assert kept.columns() == tuple(c for c in design.columns() if c != "subscription=yes")
    assert kept.row(("plan", "no")) == kept.row(("plan", "yes"))
    distinct = covariates.without_aliases(design, design.matrix(rows), share=0.0)
    assert distinct.columns() == design.columns()
