"""Building the service's parts from the settings, with no side effects at import.

Everything a worker or a command needs that depends on configuration is
made here by plain functions, so a test or a benchmark builds the same
processor the worker runs without starting Faust.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from ltv.formulas import ValueBasis
from ltv.insights import InsightsConfig
from ltv.risk import RiskThresholds
from ltv.valuation import ValuationConfig
from state.customer import StateConfig
from state.fx import load_fx_table
from streams.processing import Processor
from streams.settings import Settings


def build_processor(conf: Settings) -> Processor:
    """The processor configured from the settings (FX table loaded once)."""
    fx = load_fx_table(str(conf.fx_rates) if conf.fx_rates else None, conf.base_currency)
    state_cfg = StateConfig(
        fx=fx,
        default_margin=conf.default_margin,
        pending_window=timedelta(days=conf.pending_cancellation_days),
        max_events=conf.max_customer_events,
    )
    valuation_cfg = ValuationConfig(
        basis=ValueBasis(conf.value_basis),
        horizon_days=conf.horizon_days,
        discount_rate=float(conf.discount_rate),
        thresholds=RiskThresholds(*conf.risk_thresholds),
        cac=dict(conf.cac),
    )
    return Processor(
        state_cfg,
        valuation_cfg,
        base_currency=conf.base_currency,
        max_bytes=conf.max_message_bytes,
        cancellations_topic=conf.topic_cancellations,
        event_clock=conf.clock == "event",
        insights_cfg=insights_config(conf) if conf.insights else None,
    )


def insights_config(conf: Settings) -> InsightsConfig:
    """What the group aggregates read from the settings (docs/insights.md)."""
    basis = ValueBasis(conf.value_basis)
    return InsightsConfig(
        basis=basis,
        cac=dict(conf.cac),
        subscription_margin=Decimal(1) if basis is ValueBasis.REVENUE else conf.default_margin,
        currency=conf.base_currency,
    )
