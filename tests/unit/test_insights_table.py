"""The terminal tables of the group insights (streams/insights_table.py).

Insights come from ``ltv.insights.insights`` over the hand-written shop of
``insights_shop``; the assertions read single cells of the rendered text,
so they pin the figures and the layout rules (nulls, the below-target mark,
the width) rather than a snapshot of the whole page.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

from insights_shop import CFG, CLOCK, contribution, shop_insights

from ltv.insights import InsightsConfig, insights
from state.insights import Aggregate
from streams.insights_table import LABEL_WIDTH, NULL, render


def section(text: str, title: str) -> list[str]:
    """The lines of the section whose title starts with ``title``."""
    for block in text.split("\n\n"):
        lines = block.splitlines()
        if lines[0].startswith(title):
            return lines
    raise AssertionError(f"no section {title!r} in:\n{text}")


def cells(lines: list[str], label: str) -> list[str]:
    """The cells of the row labelled ``label``: columns are two or more spaces apart."""
    for line in lines[2:]:
        row = re.split(r" {2,}", line.strip())
        if row[0] == label:
            return row
    raise AssertionError(f"no row {label!r} in:\n" + "\n".join(lines))


TEXT = render(shop_insights())


def test_the_header_names_the_clock_the_currency_and_the_customers() -> None:
    assert TEXT.splitlines()[0] == (
        "Insights as of 2027-03-10 12:00:00Z   currency SEK   customers 6"
    )


def test_channels_show_means_cac_ratio_and_share_above_target() -> None:
    channels = section(TEXT, "LTV:CAC by acquisition channel")
    assert channels[1].split() == [
        "channel", "customers", "historic", "predicted", "total", "CAC", "LTV:CAC", "above", "3:1",
    ]  # fmt: skip
    # paid: (600 + 230) / 2 = 415 over CAC 40.5 = 10.25, both customers above 3 x 40.5.
    assert cells(channels, "paid") == [
        "paid", "2", "340.00", "75.00", "415.00", "40.50", "10.25", "100.0%",
    ]  # fmt: skip
    # seo: 20 / 15 = 1.33, marked below the 3:1 target.
    assert cells(channels, "seo")[6:] == ["1.33 *", "0.0%"]
    # CAC 0 (email), no channel (unknown), a channel not in LTV_CAC (other): no ratio.
    assert cells(channels, "email")[5:] == ["0.00", NULL, NULL]
    assert cells(channels, "unknown")[5:] == [NULL, NULL, NULL]
    assert cells(channels, "other")[:2] == ["other", "1"]
    assert "  * below the 3:1 target" in channels


def test_a_ratio_of_exactly_3_is_not_below_target() -> None:
    agg = Aggregate.of(
        [contribution([("2026-06-01T10:00:00+00:00", "45", "seo", [], None)], None, "unknown")]
    )
    seo = cells(section(render(insights(agg, CLOCK, CFG)), "LTV:CAC"), "seo")
    assert seo[6:] == ["3.00", "0.0%"]


def test_cohorts_show_value_by_age_and_retention_with_nulls_not_reached() -> None:
    cohorts = section(TEXT, "Cohorts")
    assert cohorts[1].split() == [
        "cohort", "customers", "30d", "90d", "180d", "365d", "m0", "m1", "m2", "m3", "m6", "m12",
    ]  # fmt: skip
    # Folded first: the 2024-11 customer, 300 within 30 days and 500 within 365.
    assert cells(cohorts, "older") == [
        "older", "1", "300.00", "300.00", "300.00", "500.00", "100%", "0%", "0%", "0%", "0%", "0%",
    ]  # fmt: skip
    # 2025-04 bought again 12 months later.
    assert cells(cohorts, "2025-04")[-1] == "100%"
    # 2026-06 is not 365 days old (2026-07-01 + 365 days > the clock), month 12 not over.
    june = cells(cohorts, "2026-06")
    assert (june[4], june[5], june[-1]) == ("20.00", NULL, NULL)
    # 2027-01: only 30 days reached, months 0 and 1 ended.
    assert cells(cohorts, "2027-01")[2:] == [
        "25.00", NULL, NULL, NULL, "100%", "0%", NULL, NULL, NULL, NULL,
    ]  # fmt: skip


def test_nrr_on_revenue_and_mrr() -> None:
    nrr = section(TEXT, "Net revenue retention")
    assert nrr[0] == "Net revenue retention, 2026-03 to 2027-02"
    # Base: acquired before 2026-03. Prior 200 + 100 + 30, current 80 + 30.
    assert cells(nrr, "revenue") == ["revenue", "330.00", "110.00", "33.3%"]
    # The one plan started before the window ended inside it: a real 0, not a null.
    assert cells(nrr, "MRR") == ["MRR", "30.00", "0.00", "0.0%"]


def test_breadth_nps_and_segments() -> None:
    breadth = section(TEXT, "Category breadth")
    # Single-category mean: (230 + 20 + 60) / 3 = 103.33; two categories: 600.
    assert cells(breadth, "1") == ["1", "3", "103.33", "1.00x"]
    assert cells(breadth, "2") == ["2", "1", "600.00", "5.81x"]
    nps = section(TEXT, "NPS class")
    # Promoters (600 + 65) / 2 over detractors (20 + 60) / 2.
    assert cells(nps, "promoter") == ["promoter", "2", "332.50", "8.31x"]
    assert cells(nps, "detractor")[-1] == "1.00x"
    assert nps[-1] == "  promoter:detractor mean LTV ratio 8.31x"
    segments = section(TEXT, "RFM segments")
    assert cells(segments, "champions") == ["champions", "2", "332.50"]
    assert cells(segments, "unscored") == ["unscored", "2", "60.00"]


def test_churn_risk_counts_and_what_if() -> None:
    churn = section(TEXT, "Churn")
    assert re.split(r" {2,}", churn[1].strip())[:2] == ["subscription monthly churn", "8.42%"]
    assert re.split(r" {2,}", churn[2].strip()) == [
        "churned share",
        "16.7%",
        "1 of 6 customers: subscription ended",
    ]
    risk = section(TEXT, "Customers by churn risk")
    assert [cells(risk, level)[1] for level in ("low", "medium", "high", "churned", "none")] == [
        "2", "1", "1", "1", "1",
    ]  # fmt: skip
    what_if = section(TEXT, "What-if")
    assert "ARPU 25.00, margin 1" in what_if[0]
    assert cells(what_if, "now") == ["now", "8.42%", "297.06"]
    assert cells(what_if, "churn 5 points lower") == ["churn 5 points lower", "3.42%", "731.87"]
    assert what_if[-1] == "  uplift: +146.37%"


def test_churn_below_5_points_has_no_lowered_ltv() -> None:
    # Three years later the running plan has ~40 more subscriber-months: churn ~2 %.
    later = render(shop_insights(datetime(2030, 3, 10, tzinfo=UTC)))
    what_if = section(later, "What-if")
    assert cells(what_if, "churn 5 points lower")[1:] == [NULL, NULL]
    assert what_if[-1] == f"  uplift: {NULL}"


def test_an_empty_aggregate_renders_nulls_and_empty_groups() -> None:
    text = render(insights(Aggregate(), CLOCK, CFG))
    assert text.splitlines()[0].endswith("customers 0")
    assert section(text, "LTV:CAC")[1:] == ["  (no customers)"]
    assert cells(section(text, "Net revenue retention"), "revenue")[-1] == NULL
    assert section(text, "NPS class")[1:] == ["  (no customers)"]
    assert f"  subscription monthly churn  {NULL}" in section(text, "Churn")[1]
    assert section(text, "What-if")[0].startswith(f"What-if: {NULL}")


def test_lines_fit_in_100_columns_and_long_labels_are_cut() -> None:
    assert max(len(line) for line in TEXT.splitlines()) <= 100
    name = "partner_marketplace_affiliates_emea"
    cfg = InsightsConfig(cac={name: Decimal(10)}, currency="SEK")
    agg = Aggregate.of(
        [
            contribution(
                [("2026-06-01T10:00:00+00:00", "12345.67", name, [], None)],
                None,
                "unknown",
                cfg=cfg,
            )
        ]
    )
    text = render(insights(agg, CLOCK, cfg))
    row = cells(section(text, "LTV:CAC"), name[: LABEL_WIDTH - 1] + "~")
    assert row[4:] == ["12,345.67", "10.00", "1,234.57", "100.0%"]
    assert max(len(line) for line in text.splitlines()) <= 100
