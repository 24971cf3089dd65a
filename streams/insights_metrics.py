"""Prometheus gauges of the group insights (docs/metrics.md#business-insights).

The figures come from ``ltv.insights.insights``, read from the merged
aggregates; ``InsightsGauges.update`` mirrors one ``Insights`` value into
gauges, so the dashboard can chart LTV:CAC, cohort curves and NRR over time.

Two rules shape this module:

* Bounded labels. Channels are the ``LTV_CAC`` channels plus ``other`` and
  ``unknown``, cohorts the 24 months ending with the figures' month plus
  ``older``, breadths and NPS classes their fixed sets. ``Insights`` from
  ``ltv.insights`` already satisfy this; anything else that reaches
  ``update`` is folded (a channel into ``other``) or left out (a cohort, a
  breadth or class), so no caller can grow the series count.
* No fake zeros. A null figure (no CAC, an age not reached, no prior-window
  revenue) is not exported: its child is removed, and an unlabelled family
  exports no sample. A cohort, channel or member that leaves the figures is
  removed too, so stale label sets do not linger. 0 always means 0.

Unlike ``Metrics`` there is no instance at import: the channel set comes
from the settings, which are not loaded at import. Build one per registry
(registering a name twice on one registry raises).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal

from prometheus_client import REGISTRY, CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily

from ltv.insights import (
    BREADTHS,
    COHORT_MONTHS,
    NPS_CLASSES,
    OLDER,
    OTHER_CHANNEL,
    UNKNOWN_CHANNEL,
    ChannelFigures,
    Insights,
    cents,
    month_index,
    month_name,
)

__all__ = ["InsightsGauges"]

#: ``kind`` label of ``ltv_insights_channel_mean_ltv``.
LTV_KINDS = ("historic", "predicted", "total")
#: ``scenario`` label of ``ltv_insights_what_if_ltv``.
NOW, CHURN_MINUS_5PTS = "now", "churn_minus_5pts"

_Labels = tuple[str, ...]


class _Series:
    """A labelled gauge whose children are exactly the label sets of the last ``show``."""

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.gauge = Gauge(name, documentation, labels, registry=registry)
        self._shown: set[_Labels] = set()

    def show(self, values: Mapping[_Labels, float | None]) -> None:
        """Set every non-null value; remove every child that has none now."""
        current = {labels: v for labels, v in values.items() if v is not None}
        for labels in self._shown - current.keys():
            self.gauge.remove(*labels)
        for labels, v in current.items():
            self.gauge.labels(*labels).set(v)
        self._shown = set(current)


class _OptionalGauge:
    """An unlabelled gauge that exports no sample while its value is None.

    prometheus-client's own unlabelled ``Gauge`` always exports a value (0
    before the first ``set``), and a null figure must not read as 0.
    """

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self._name, self._documentation = name, documentation
        self.value: float | None = None
        registry.register(self)

    def describe(self) -> list[GaugeMetricFamily]:
        """The family without samples: lets the registry refuse a duplicate name."""
        return [GaugeMetricFamily(self._name, self._documentation)]

    def collect(self) -> list[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._documentation)
        if self.value is not None:
            family.add_metric([], self.value)
        return [family]


def _number(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


class InsightsGauges:
    """The insights' gauge families on one registry (docs/metrics.md#business-insights).

    ``channels`` are the channels of ``LTV_CAC``: with ``other`` and
    ``unknown`` they are the only ``channel`` label values ever exported.
    """

    def __init__(self, channels: Iterable[str], registry: CollectorRegistry = REGISTRY) -> None:
        self.channels = frozenset(channels) | {OTHER_CHANNEL, UNKNOWN_CHANNEL}

        def series(name: str, documentation: str, *labels: str) -> _Series:
            return _Series(name, documentation, labels, registry)

        def scalar(name: str, documentation: str) -> _OptionalGauge:
            return _OptionalGauge(name, documentation, registry)

        self.customers = scalar("ltv_insights_customers", "Customers who count in the insights.")
        self.channel_customers = series(
            "ltv_insights_channel_customers", "Customers by acquisition channel.", "channel"
        )
        self.channel_ltv_cac = series(
            "ltv_insights_channel_ltv_cac",
            "Mean total LTV over the channel's CAC (absent without a CAC).",
            "channel",
        )
        self.channel_mean_ltv = series(
            "ltv_insights_channel_mean_ltv",
            "Mean historic, predicted and total LTV per customer of a channel, base currency.",
            "channel",
            "kind",
        )
        self.channel_share_above_target = series(
            "ltv_insights_channel_share_above_target",
            "Share of a channel's customers with total LTV above 3 x CAC (absent without a CAC).",
            "channel",
        )
        self.cohort_customers = series(
            "ltv_insights_cohort_customers", "Customers by acquisition month.", "cohort"
        )
        self.cohort_net_per_customer = series(
            "ltv_insights_cohort_net_per_customer",
            "Net revenue per customer of a cohort within age_days of each first order "
            "(absent until the whole cohort is that old), base currency.",
            "cohort",
            "age_days",
        )
        self.nrr_ratio = series(
            "ltv_insights_nrr_ratio",
            "Net revenue retention of the last 12 complete months, revenue or MRR based.",
            "basis",
        )
        self.breadth_mean_ltv = series(
            "ltv_insights_breadth_mean_ltv",
            "Mean total LTV by number of categories bought, base currency.",
            "breadth",
        )
        self.breadth_ratio = series(
            "ltv_insights_breadth_ratio",
            "Mean total LTV by number of categories over that of single-category customers.",
            "breadth",
        )
        self.nps_customers = series(
            "ltv_insights_nps_customers", "Customers by NPS class.", "nps_class"
        )
        self.nps_mean_ltv = series(
            "ltv_insights_nps_mean_ltv", "Mean total LTV by NPS class, base currency.", "nps_class"
        )
        self.promoter_detractor_ratio = scalar(
            "ltv_insights_promoter_detractor_ratio",
            "Mean total LTV of promoters over that of detractors.",
        )
        self.subscription_monthly_churn = scalar(
            "ltv_insights_subscription_monthly_churn",
            "Subscriptions ended per subscriber-month.",
        )
        self.churned_share = scalar(
            "ltv_insights_churned_share",
            "Share of customers at churn-risk level churned (subscription ended).",
        )
        self.inactivity_churn_rate = scalar(
            "ltv_insights_inactivity_churn_rate",
            "Share of customers at churn-risk level high (likely gone by inactivity).",
        )
        self.what_if_ltv = series(
            "ltv_insights_what_if_ltv",
            "Seed-formula subscription LTV now and with monthly churn 5 points lower.",
            "scenario",
        )
        self.updated = scalar(
            "ltv_insights_updated_timestamp_seconds",
            "Unix time the exported insights are as of.",
        )

    def update(self, insights: Insights) -> None:
        """Export ``insights``; whatever it no longer holds stops being exported."""
        self.customers.value = insights.customers

        channels = self._bounded(insights.channels)
        self.channel_customers.show({(c.channel,): c.customers for c in channels})
        self.channel_ltv_cac.show({(c.channel,): c.ltv_cac for c in channels})
        self.channel_share_above_target.show({(c.channel,): c.share_above_target for c in channels})
        self.channel_mean_ltv.show(
            {
                (c.channel, kind): float(mean)
                for c in channels
                for kind, mean in zip(
                    LTV_KINDS,
                    (c.mean_historic_ltv, c.mean_predicted_ltv, c.mean_total_ltv),
                    strict=True,
                )
            }
        )

        now = month_index(insights.as_of)
        shown = {OLDER, *(month_name(now - k) for k in range(COHORT_MONTHS))}
        cohorts = [c for c in insights.cohorts if c.cohort in shown]
        self.cohort_customers.show({(c.cohort,): c.customers for c in cohorts})
        self.cohort_net_per_customer.show(
            {
                (c.cohort, str(age)): _number(net)
                for c in cohorts
                for age, net in c.net_per_customer.items()
            }
        )

        nrr = insights.nrr
        self.nrr_ratio.show({("revenue",): nrr.revenue_nrr, ("mrr",): nrr.mrr_nrr})

        breadth = [g for g in insights.breadth if g.member in BREADTHS]
        self.breadth_mean_ltv.show({(g.member,): float(g.mean_total_ltv) for g in breadth})
        self.breadth_ratio.show({(g.member,): g.ratio for g in breadth})
        nps = [g for g in insights.nps if g.member in NPS_CLASSES]
        self.nps_customers.show({(g.member,): g.customers for g in nps})
        self.nps_mean_ltv.show({(g.member,): float(g.mean_total_ltv) for g in nps})
        self.promoter_detractor_ratio.value = insights.promoter_detractor_ratio

        churn = insights.churn
        self.subscription_monthly_churn.value = churn.subscription_monthly_churn
        self.churned_share.value = churn.churned_share
        self.inactivity_churn_rate.value = churn.inactivity_churn_rate
        what_if = churn.what_if
        self.what_if_ltv.show(
            {
                (NOW,): None if what_if is None else float(what_if.ltv),
                (CHURN_MINUS_5PTS,): None if what_if is None else _number(what_if.ltv_after),
            }
        )
        self.updated.value = insights.as_of.timestamp()

    def _bounded(self, channels: Iterable[ChannelFigures]) -> list[ChannelFigures]:
        """One figure per exported label: a channel outside ``self.channels`` is
        folded into ``other``, which has no CAC and so no LTV:CAC."""
        by_label: defaultdict[str, list[ChannelFigures]] = defaultdict(list)
        for c in channels:
            by_label[c.channel if c.channel in self.channels else OTHER_CHANNEL].append(c)
        return [
            group[0] if len(group) == 1 and group[0].channel == label else _fold(label, group)
            for label, group in by_label.items()
        ]


def _fold(label: str, group: Sequence[ChannelFigures]) -> ChannelFigures:
    n = sum(c.customers for c in group)
    historic = sum((c.historic_ltv for c in group), Decimal(0))
    predicted = sum((c.predicted_ltv for c in group), Decimal(0))
    total = sum((c.total_ltv for c in group), Decimal(0))

    def mean(amount: Decimal) -> Decimal:
        return cents(amount / n) if n else Decimal("0.00")

    return ChannelFigures(
        channel=label,
        customers=n,
        historic_ltv=historic,
        predicted_ltv=predicted,
        total_ltv=total,
        mean_historic_ltv=mean(historic),
        mean_predicted_ltv=mean(predicted),
        mean_total_ltv=mean(total),
        cac=None,
        ltv_cac=None,
        share_above_target=None,
    )
