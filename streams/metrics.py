"""Prometheus metrics (docs/metrics.md), defined once for the whole worker.

Names carry the ``ltv_`` prefix and base units; no label ever holds a
customer id, so cardinality stays bounded by topics, partitions and enums.
"""

from __future__ import annotations

from itertools import permutations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from ltv.rfm import Segment
from ltv.risk import RiskLevel
from state.events import ErrorCode

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 3600, 86400, 30 * 86400)
_LTV_BUCKETS = (0, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000)


class Metrics:
    """The worker's metric families, registered on one registry.

    A registry parameter lets tests build a fresh set without clashing with
    the process-wide default registry (prometheus-client refuses duplicates).
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.events_consumed = Counter(
            "ltv_events_consumed_total",
            "Input records read, by topic.",
            ["topic"],
            registry=registry,
        )
        self.events_processed = Counter(
            "ltv_events_processed_total",
            "Input events handled, by type and outcome (applied, duplicate, held, dead_letter).",
            ["event_type", "outcome"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "ltv_dead_letter_total",
            "Records sent to the dead-letter topic, by reason code.",
            ["reason"],
            registry=registry,
        )
        self.processing_seconds = Histogram(
            "ltv_event_processing_seconds",
            "Time to decode, apply, value and publish one event.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.event_lag_seconds = Histogram(
            "ltv_event_lag_seconds",
            "Wall clock minus the event's occurred_at when it is processed.",
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "ltv_consumer_lag_messages",
            "End offset minus committed offset, per assigned input partition.",
            ["topic", "partition"],
            registry=registry,
        )
        self.updates_emitted = Counter(
            "ltv_updates_emitted_total",
            "Records published to the ltv.updates topic.",
            registry=registry,
        )
        self.churn_transitions = Counter(
            "ltv_churn_transitions_total",
            "Churn-risk level changes published, by previous and current level.",
            ["previous", "current"],
            registry=registry,
        )
        self.customer_total_ltv = Histogram(
            "ltv_customer_total_ltv",
            "total_ltv of each published update, in the base currency.",
            buckets=_LTV_BUCKETS,
            registry=registry,
        )
        self.customers = Gauge(
            "ltv_customers",
            "Customers by churn-risk level at the last model fit (same on every worker: use max).",
            ["churn_risk"],
            registry=registry,
        )
        self.segment_customers = Gauge(
            "ltv_segment_customers",
            "Customers by RFM segment at the last model fit (same on every worker: use max).",
            ["segment"],
            registry=registry,
        )
        self.model_info = Gauge(
            "ltv_model_info",
            "1 for the model name and version in force, and how its orders model was"
            " chosen (holdout: best holdout log-likelihood; default: no holdout).",
            ["model", "version", "chosen_by"],
            registry=registry,
        )
        self.model_holdout_log_likelihood = Gauge(
            "ltv_model_holdout_log_likelihood",
            "Holdout log-likelihood of each candidate orders model at the fit in force"
            " (the highest is chosen).",
            ["candidate"],
            registry=registry,
        )
        self.model_holdout_error = Gauge(
            "ltv_model_holdout_error",
            "Predicted over actual holdout repeat purchase days, minus one, of each"
            " candidate orders model at the fit in force.",
            ["candidate"],
            registry=registry,
        )
        self.model_fit_timestamp = Gauge(
            "ltv_model_fit_timestamp_seconds",
            "Unix time of the fit whose parameters are in force.",
            registry=registry,
        )
        self.model_calibration_ratio = Gauge(
            "ltv_model_calibration_ratio",
            "Repeat purchase days counted / predicted by the fit in the last closed window, "
            "by window length (no sample until a window closed).",
            ["window"],
            registry=registry,
        )
        self.model_calibration_predicted = Gauge(
            "ltv_model_calibration_predicted",
            "Repeat purchase days the open calibration window predicts, by window length.",
            ["window"],
            registry=registry,
        )
        self.assigned_partitions = Gauge(
            "ltv_assigned_partitions",
            "Input partitions assigned to this worker.",
            registry=registry,
        )
        self.rebalances = Counter(
            "ltv_rebalances_total",
            "Consumer-group rebalances seen by this worker.",
            registry=registry,
        )
        self.inactivity_checks = Counter(
            "ltv_inactivity_checks_total",
            "Due customers the inactivity timer handed out (one internal record each).",
            registry=registry,
        )
        self.inactivity_tick_seconds = Histogram(
            "ltv_inactivity_tick_seconds",
            "Duration of one inactivity timer tick (all active partitions).",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.model_fit_failures = Counter(
            "ltv_model_fit_failures_total",
            "Model fits that failed; the previous parameters stay in force.",
            registry=registry,
        )
        self.prime()

    def prime(self) -> None:
        """Export every known label value of the enum-labelled families at zero.

        A labelled family exports nothing for a value never observed, so
        ``increase(ltv_dead_letter_total[5m]) > 0`` could not see the first
        dead letter of a reason (there is no earlier zero sample), and the
        dashboard would show "no data" instead of 0 for levels, segments and
        transitions that have not happened yet. The values come from the
        domain enums, so a new reason or level is primed without editing this.
        """
        for reason in ErrorCode:
            self.dead_letters.labels(reason.value)
        for level in RiskLevel:
            self.customers.labels(level.value)
        for previous, current in permutations(RiskLevel, 2):
            self.churn_transitions.labels(previous.value, current.value)
        for level in RiskLevel:  # a customer's first level
            self.churn_transitions.labels(NO_LEVEL, level.value)
        for segment in Segment:
            self.segment_customers.labels(segment.value)


#: ``previous`` label of a customer's first churn-risk level.
NO_LEVEL = "none"

METRICS = Metrics()


def sample_value(metric: Counter | Gauge) -> float:
    """The current value of one counter or gauge (a labelled child included).

    Read through ``collect()``, the client's public API, leaving out the
    ``_created`` sample counters carry.
    """
    return next(
        sample.value
        for family in metric.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    )
