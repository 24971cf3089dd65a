"""CDNOW checks: the fits reproduce the published figures (docs/valuation.md).

Data: the 1/10 CDNOW sample, calibration through 1997-09-30 (tests/cdnow.py).

Published values: BG/NBD — Fader, Hardie & Lee 2005, Marketing Science 24(2),
section 5; MBG/NBD — Batislam, Denizel & Filiztekin 2007 as reproduced on
CDNOW (r=0.525, alpha=6.183, a=0.891, b=1.614); Gamma-Gamma — Fader, Hardie &
Lee 2005 "RFM and CLV", section 3 / Fader & Hardie 2013 note.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from cdnow import Rows, calibration_summaries, datasets_dir, load_rows

from ltv import bgnbd, gammagamma, mbgnbd
from ltv.fitting import FitResult
from ltv.summary import Summaries


@pytest.fixture(scope="module")
def rows() -> Rows:
    return load_rows()


@pytest.fixture(scope="module")
def calibration(rows: Rows) -> Summaries:
    return calibration_summaries(rows)


@pytest.fixture(scope="module")
def bg_weeks(calibration: Summaries) -> FitResult[bgnbd.BGNBDParams]:
    return bgnbd.fit(calibration.x, calibration.t_x / 7.0, calibration.T / 7.0)


@pytest.fixture(scope="module")
def mbg_weeks(calibration: Summaries) -> FitResult[mbgnbd.MBGNBDParams]:
    return mbgnbd.fit(calibration.x, calibration.t_x / 7.0, calibration.T / 7.0)


def test_calibration_counts(rows: Rows, calibration: Summaries) -> None:
    _, days, values = rows
    in_calibration = days <= 272.0
    assert int(in_calibration.sum()) == 4960
    assert int((values[in_calibration] == 0).sum()) == 8
    assert len(calibration.customer) == 2357
    assert int((calibration.x > 0).sum()) == 946


def test_summary_matches_shipped_rounded_summary(calibration: Summaries) -> None:
    """Our summary agrees with the independently prepared (2-decimal) one."""
    with (datasets_dir() / "cdnow_customers_summary_with_transactions.csv").open() as handle:
        reference = list(csv.DictReader(handle))
    ref = {int(row["ID"]): row for row in reference}
    assert sorted(ref) == calibration.customer.tolist()
    for i, customer in enumerate(calibration.customer.tolist()):
        row = ref[customer]
        assert int(row["x"]) == calibration.x[i]
        assert abs(float(row["t_x"]) - calibration.t_x[i] / 7.0) <= 0.0051
        assert abs(float(row["T"]) - calibration.T[i] / 7.0) <= 0.0051
        assert abs(float(row["zbar"]) - calibration.zbar[i]) <= 0.0051


def test_bgnbd_reproduces_published_fit(bg_weeks: FitResult[bgnbd.BGNBDParams]) -> None:
    p = bg_weeks.params
    assert bg_weeks.converged
    assert bg_weeks.n == 2357
    assert p.r == pytest.approx(0.243, abs=5e-4)
    assert p.alpha == pytest.approx(4.414, abs=5e-4)
    assert p.a == pytest.approx(0.793, abs=5e-4)
    assert p.b == pytest.approx(2.426, abs=5e-4)
    assert bg_weeks.log_likelihood == pytest.approx(-9582.4, abs=0.05)


def test_bgnbd_in_days_scales_alpha_only(
    calibration: Summaries, bg_weeks: FitResult[bgnbd.BGNBDParams]
) -> None:
    days = bgnbd.fit(calibration.x, calibration.t_x, calibration.T)
    w, d = bg_weeks.params, days.params
    assert d.alpha == pytest.approx(7.0 * w.alpha, rel=1e-4)
    for name in ("r", "a", "b"):
        assert getattr(d, name) == pytest.approx(getattr(w, name), rel=1e-4)
    # Densities in t_x pick up a Jacobian of 1/7 per repeat purchase.
    shift = float(calibration.x.sum()) * math.log(7.0)
    assert days.log_likelihood == pytest.approx(bg_weeks.log_likelihood - shift, abs=1e-3)


def test_mbgnbd_reproduces_published_fit(mbg_weeks: FitResult[mbgnbd.MBGNBDParams]) -> None:
    p = mbg_weeks.params
    assert mbg_weeks.converged
    assert p.r == pytest.approx(0.525, abs=5e-4)
    assert p.alpha == pytest.approx(6.183, abs=5e-4)
    assert p.a == pytest.approx(0.891, abs=5e-4)
    assert p.b == pytest.approx(1.614, abs=5e-4)


def test_gammagamma_reproduces_published_fit(calibration: Summaries) -> None:
    fit = gammagamma.fit(calibration.x, calibration.zbar)
    assert fit.converged
    assert fit.n == 946
    assert fit.params.p == pytest.approx(6.25, abs=5e-3)
    assert fit.params.q == pytest.approx(3.74, abs=5e-3)
    assert fit.params.gamma == pytest.approx(15.44, abs=5e-3)


def test_predictions_match_lifetimes(calibration: Summaries) -> None:
    """Same parameters -> same per-customer predictions as lifetimes (1e-6 rel)."""
    lifetimes = pytest.importorskip("lifetimes")
    pd = pytest.importorskip("pandas")
    x, t_x, T, zbar = calibration.x, calibration.t_x / 7.0, calibration.T / 7.0, calibration.zbar
    horizon = 39.0
    cases = [
        (bgnbd, bgnbd.BGNBDParams(0.243, 4.414, 0.793, 2.426), lifetimes.BetaGeoFitter),
        (mbgnbd, mbgnbd.MBGNBDParams(0.525, 6.183, 0.891, 1.614), lifetimes.ModifiedBetaGeoFitter),
    ]
    for module, params, fitter_type in cases:
        fitter = fitter_type()
        fitter.params_ = pd.Series(params.as_dict())
        theirs_orders = fitter.conditional_expected_number_of_purchases_up_to_time(
            horizon, x, t_x, T
        )
        ours_orders = module.expected_orders(params, horizon, x, t_x, T)
        np.testing.assert_allclose(ours_orders, np.asarray(theirs_orders), rtol=1e-6)
        theirs_alive = fitter.conditional_probability_alive(x, t_x, T)
        np.testing.assert_allclose(
            module.p_alive(params, x, t_x, T), np.asarray(theirs_alive), rtol=1e-6
        )
    spend = gammagamma.GammaGammaParams(6.25, 3.74, 15.44)
    gg = lifetimes.GammaGammaFitter()
    gg.params_ = pd.Series({"p": spend.p, "q": spend.q, "v": spend.gamma})
    repeat = x > 0
    theirs_spend = gg.conditional_expected_average_profit(x[repeat], zbar[repeat])
    np.testing.assert_allclose(
        gammagamma.conditional_expected_spend(spend, x[repeat], zbar[repeat]),
        np.asarray(theirs_spend),
        rtol=1e-6,
    )
