"""The insights' Prometheus gauges (streams/insights_metrics.py).

Each test builds the gauges on a fresh ``CollectorRegistry`` and reads the
exported samples back with ``get_sample_value``, over the hand-written shop
of ``insights_shop`` (figures worked out there).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from insights_shop import CFG, CLOCK, shop_insights
from prometheus_client import CollectorRegistry, generate_latest

from ltv.insights import insights
from state.insights import Aggregate
from streams.insights_metrics import InsightsGauges

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "ltv-stream.json"
INSIGHT_NAME = re.compile(r"ltv_insights_\w+")

#: Every family, to check what is exported before any figures exist.
FAMILIES = (
    "ltv_insights_customers",
    "ltv_insights_channel_customers",
    "ltv_insights_channel_ltv_cac",
    "ltv_insights_channel_mean_ltv",
    "ltv_insights_channel_share_above_target",
    "ltv_insights_cohort_customers",
    "ltv_insights_cohort_net_per_customer",
    "ltv_insights_nrr_ratio",
    "ltv_insights_breadth_mean_ltv",
    "ltv_insights_breadth_ratio",
    "ltv_insights_nps_customers",
    "ltv_insights_nps_mean_ltv",
    "ltv_insights_promoter_detractor_ratio",
    "ltv_insights_subscription_monthly_churn",
    "ltv_insights_churned_share",
    "ltv_insights_inactivity_churn_rate",
    "ltv_insights_what_if_ltv",
    "ltv_insights_updated_timestamp_seconds",
)


def gauges(
    channels: frozenset[str] = frozenset(CFG.cac),
) -> tuple[InsightsGauges, CollectorRegistry]:
    registry = CollectorRegistry()
    return InsightsGauges(channels, registry), registry


def labels(registry: CollectorRegistry, family: str, label: str) -> set[str]:
    """The values of ``label`` among the samples ``family`` exports."""
    return {
        sample.labels[label]
        for metric in registry.collect()
        if metric.name == family
        for sample in metric.samples
    }


def test_nothing_is_exported_before_the_first_update() -> None:
    _, registry = gauges()
    samples = [s for m in registry.collect() if m.name in FAMILIES for s in m.samples]
    assert samples == []
    # Every family is still described, so the page names them all.
    text = generate_latest(registry).decode()
    assert all(f"# TYPE {family} gauge" in text for family in FAMILIES)


def test_figures_are_exported_in_base_units() -> None:
    g, registry = gauges()
    g.update(shop_insights())

    def value(name: str, **label_values: str) -> float | None:
        return registry.get_sample_value(name, label_values)

    assert value("ltv_insights_customers") == 6
    assert value("ltv_insights_channel_customers", channel="paid") == 2
    # (600 + 230) / 2 over a CAC of 40.5, to 4 decimals.
    assert value("ltv_insights_channel_ltv_cac", channel="paid") == round(415 / 40.5, 4)
    assert value("ltv_insights_channel_ltv_cac", channel="seo") == round(20 / 15, 4)
    for kind, mean in (("historic", 340.0), ("predicted", 75.0), ("total", 415.0)):
        assert value("ltv_insights_channel_mean_ltv", channel="paid", kind=kind) == mean
    assert value("ltv_insights_channel_share_above_target", channel="paid") == 1.0
    assert value("ltv_insights_channel_share_above_target", channel="seo") == 0.0
    assert value("ltv_insights_cohort_customers", cohort="older") == 1
    assert value("ltv_insights_cohort_net_per_customer", cohort="older", age_days="365") == 500.0
    assert value("ltv_insights_cohort_net_per_customer", cohort="2026-06", age_days="180") == 20.0
    assert value("ltv_insights_nrr_ratio", basis="revenue") == round(110 / 330, 4)
    assert value("ltv_insights_nrr_ratio", basis="mrr") == 0.0  # a real 0: MRR all lost
    assert value("ltv_insights_breadth_mean_ltv", breadth="2") == 600.0
    assert value("ltv_insights_breadth_ratio", breadth="2") == round(600 / (310 / 3), 4)
    assert value("ltv_insights_breadth_ratio", breadth="1") == 1.0
    assert value("ltv_insights_nps_customers", nps_class="promoter") == 2
    assert value("ltv_insights_nps_mean_ltv", nps_class="detractor") == 40.0
    assert value("ltv_insights_promoter_detractor_ratio") == round(332.5 / 40, 4)
    churn = shop_insights().churn
    assert value("ltv_insights_subscription_monthly_churn") == churn.subscription_monthly_churn
    assert value("ltv_insights_subscription_monthly_churn") == pytest.approx(1 / 11.88, rel=1e-3)
    assert value("ltv_insights_churned_share") == round(1 / 6, 4)
    assert value("ltv_insights_inactivity_churn_rate") == round(1 / 6, 4)
    assert value("ltv_insights_what_if_ltv", scenario="now") == 297.06
    assert value("ltv_insights_what_if_ltv", scenario="churn_minus_5pts") == 731.87
    assert value("ltv_insights_updated_timestamp_seconds") == CLOCK.timestamp()


def test_null_figures_are_absent_not_zero() -> None:
    g, registry = gauges()
    g.update(shop_insights())
    # No CAC: CAC 0 (email), no channel (unknown), a channel not in LTV_CAC (other).
    assert labels(registry, "ltv_insights_channel_ltv_cac", "channel") == {"paid", "seo"}
    assert labels(registry, "ltv_insights_channel_share_above_target", "channel") == {"paid", "seo"}
    # 2026-06 is not 365 days old yet; 2027-01 only 30 days.
    assert (
        registry.get_sample_value(
            "ltv_insights_cohort_net_per_customer", {"cohort": "2026-06", "age_days": "365"}
        )
        is None
    )
    ages = {
        s.labels["age_days"]
        for m in registry.collect()
        if m.name == "ltv_insights_cohort_net_per_customer"
        for s in m.samples
        if s.labels["cohort"] == "2027-01"
    }
    assert ages == {"30"}
    # With no customers every figure but the count and the time is null or gone:
    # the series set before are removed, none is left at its old value or at 0.
    g.update(insights(Aggregate(), CLOCK, CFG))
    exported = {m.name for m in registry.collect() if m.samples}
    assert exported == {"ltv_insights_customers", "ltv_insights_updated_timestamp_seconds"}
    assert registry.get_sample_value("ltv_insights_customers") == 0


def test_a_channel_outside_the_configured_ones_is_folded_into_other() -> None:
    # The gauges know only seo: paid (2 customers) and email (1) join other (tiktok, 1).
    g, registry = gauges(frozenset({"seo"}))
    g.update(shop_insights())
    assert labels(registry, "ltv_insights_channel_customers", "channel") == {
        "seo",
        "other",
        "unknown",
    }
    assert registry.get_sample_value("ltv_insights_channel_customers", {"channel": "other"}) == 4
    mean = registry.get_sample_value(
        "ltv_insights_channel_mean_ltv", {"channel": "other", "kind": "total"}
    )
    assert mean == round((830 + 60 + 65) / 4, 2)
    # other has no CAC, so no LTV:CAC, whatever the folded channels had.
    assert labels(registry, "ltv_insights_channel_ltv_cac", "channel") == {"seo"}


def test_a_cohort_leaving_the_window_is_removed() -> None:
    g, registry = gauges()
    g.update(shop_insights())
    assert labels(registry, "ltv_insights_cohort_customers", "cohort") == {
        "older",
        "2025-04",
        "2026-02",
        "2026-06",
        "2026-09",
        "2027-01",
    }
    # A month later 2025-04 is 24 months back: folded into older.
    g.update(shop_insights(datetime(2027, 4, 10, tzinfo=UTC)))
    cohorts = labels(registry, "ltv_insights_cohort_customers", "cohort")
    assert "2025-04" not in cohorts and "older" in cohorts
    assert registry.get_sample_value("ltv_insights_cohort_customers", {"cohort": "older"}) == 2
    assert "2025-04" not in labels(registry, "ltv_insights_cohort_net_per_customer", "cohort")


def test_a_cohort_outside_the_figures_window_is_not_exported() -> None:
    # Figures as of 2027-03 exported with a clock two years on: every cohort but
    # older is outside the 24 months ending with the clock's month.
    g, registry = gauges()
    g.update(replace(shop_insights(), as_of=datetime(2029, 3, 10, tzinfo=UTC)))
    assert labels(registry, "ltv_insights_cohort_customers", "cohort") == {"older"}


def test_registering_twice_on_one_registry_is_refused() -> None:
    _, registry = gauges()
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        InsightsGauges([], registry)


def test_the_families_are_the_documented_ones() -> None:
    _, registry = gauges()
    registered = {m.name for m in registry.collect()}
    assert registered == set(FAMILIES)
    documented = set(INSIGHT_NAME.findall((ROOT / "docs" / "metrics.md").read_text()))
    assert documented == registered


def test_the_dashboard_queries_only_families_defined_here() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    queried = {
        name
        for panel in panels
        for target in panel["targets"]
        for name in INSIGHT_NAME.findall(target["expr"])
    }
    # The business panels chart these; a misspelt name would only show "no data".
    assert queried, "no panel queries an insights family"
    assert queried <= set(FAMILIES), queried - set(FAMILIES)
