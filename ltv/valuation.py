"""One customer's full valuation (docs/valuation.md): the figures of an ltv.updates record.

Pure and synchronous: the processor hands in a ``CustomerFigures`` snapshot taken
from the customer's state, the ``ModelSnapshot`` in force (None before the
first fit) and a clock; everything else is arithmetic. Keeping the state
types out of this module is what lets ltv/ stay free of storage concerns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import lru_cache

from ltv.acquisition import FirstOrder, OrdersCovariates
from ltv.clv import value_customer
from ltv.formulas import (
    ValueBasis,
    average_order_value,
    customer_formula_ltv,
    expected_next_order_at,
    historic_ltv,
    ltv_cac,
    mean_purchase_gap_days,
    subscription_ltv,
)
from ltv.gammagamma import GammaGammaParams
from ltv.orders import OrdersParams
from ltv.rfm import RfmEdges, rfm_score
from ltv.risk import RiskLevel, RiskThresholds, heuristic_risk, risk_from_p_alive
from ltv.sbg import SBGParams, derl

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class CustomerFigures:
    """What valuation needs to know about a customer, in base currency and days.

    ``first_day``/``last_day``/``clock_day`` are day ordinals; ``x`` distinct
    purchase days minus one; ``repeat_value`` the value (on the chosen basis)
    of purchase days after the first, Gamma-Gamma's input.
    """

    orders: int
    net_revenue: Decimal
    net_margin: Decimal
    first_order_at: datetime | None
    last_order_at: datetime | None
    x: int
    t_x: int
    T: int
    repeat_value: Decimal
    channel: str | None
    subscription_amount: Decimal | None = None
    subscription_margin_rate: Decimal | None = None
    subscription_active: bool = False
    subscription_ended: bool = False
    #: The plan and billing interval of the latest charge, and the renewals
    #: (whole periods) since the first one, for the retention model.
    subscription_plan: str | None = None
    subscription_interval: str | None = None
    subscription_renewals: int = 0
    #: The covariates of a covariate orders model (None: no order yet).
    first_order: FirstOrder | None = None


#: Days per billing interval (months and years as the fit job counts them).
PERIOD_DAYS = {"day": 1.0, "week": 7.0, "month": 365.25 / 12, "year": 365.25}


def completed_periods(started_at: datetime, until: datetime, interval: str) -> int:
    """Whole billing periods from the first charge to ``until``: the renewals
    a subscription still running at ``until`` has made (0 before the first one)."""
    days = (until - started_at).total_seconds() / 86400
    return max(0, math.floor(days / PERIOD_DAYS[interval]))


def retention_key(interval: str, plan: str | None = None) -> str:
    """Name of a retention fit: per billing interval, or per plan of one interval."""
    return interval if plan is None else f"{interval}|{plan}"


@dataclass(frozen=True, slots=True)
class ModelSnapshot:
    """Population parameters of the last fit, shared by every worker."""

    version: str
    #: The orders model the fit chose on its holdout (``ltv.orders``).
    orders: OrdersParams
    spend: GammaGammaParams
    rfm: RfmEdges | None = None
    subscription_monthly_churn: float | None = None
    population_gap_days: float = 90.0
    name: str = "mbgnbd+gammagamma"
    #: sBG retention of subscriptions (``retention_key``: a plan's own fit, or
    #: its billing interval's); an interval without one keeps the BTYD value.
    retention: Mapping[str, SBGParams] = field(default_factory=dict)
    #: The orders model with covariates, when the fit found they predict
    #: better; ``orders`` is then its reference customer's parameters.
    covariates: OrdersCovariates | None = None

    def orders_for(self, first: FirstOrder | None) -> OrdersParams:
        """The orders-model parameters of a customer with this first order."""
        if self.covariates is None:
            return self.orders
        return self.covariates.params_for(first)

    def retention_of(self, interval: str, plan: str | None) -> SBGParams | None:
        """The plan's own retention fit, else its interval's, else None."""
        return self.retention.get(retention_key(interval, plan)) or self.retention.get(
            retention_key(interval)
        )


@dataclass(frozen=True, slots=True)
class ValuationConfig:
    """The valuation knobs of the configuration (docs/configuration.md)."""

    basis: ValueBasis = ValueBasis.REVENUE
    horizon_days: int = 365
    discount_rate: float = 0.10
    thresholds: RiskThresholds = field(default_factory=RiskThresholds)
    cac: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Valuation:
    historic_ltv: Decimal
    aov: Decimal | None
    formula_ltv: Decimal | None
    predicted_ltv: Decimal | None
    total_ltv: Decimal
    expected_orders: float | None
    p_alive: float | None
    churn_risk: RiskLevel | None
    expected_next_order_at: datetime | None
    segment: str | None
    ltv_cac: float | None
    days_since_last_order: int | None


def value(
    c: CustomerFigures, model: ModelSnapshot | None, cfg: ValuationConfig, clock: datetime
) -> Valuation:
    """Value one customer as of ``clock``; BTYD figures only once a model is fitted."""
    historic = historic_ltv(c.net_revenue, c.net_margin, cfg.basis)
    aov = average_order_value(historic, c.orders)
    if c.last_order_at is None or aov is None:
        return Valuation(
            historic, None, None, None, historic, None, None, None, None, None, None, None
        )
    since_last = max(0, (clock - c.last_order_at).days)
    gap = mean_purchase_gap_days(c.x + 1, 0, c.t_x)
    formula = _formula(c, model, cfg, aov)
    predicted: Decimal | None = None
    expected_orders = p_alive = None
    if model is not None:
        zbar = float(c.repeat_value) / c.x if c.x > 0 else 0.0
        v = value_customer(
            model.orders_for(c.first_order),
            model.spend,
            c.x,
            c.t_x,
            c.T,
            zbar,
            horizon=cfg.horizon_days,
            annual_discount_rate=cfg.discount_rate,
        )
        # A model outside its valid range (Gamma-Gamma q <= 1 has no mean
        # spend) must not put NaN or Infinity into an update: leave it out.
        if math.isfinite(v.predicted_ltv):
            predicted = Decimal(repr(v.predicted_ltv))
        if math.isfinite(v.expected_orders) and math.isfinite(v.p_alive):
            expected_orders, p_alive = v.expected_orders, v.p_alive
        residual = _subscription_residual(c, model, cfg)
        if residual is not None:
            predicted = residual
    if p_alive is not None:
        risk = risk_from_p_alive(p_alive, cfg.thresholds, subscription_ended=c.subscription_ended)
    else:
        risk = heuristic_risk(since_last, gap, subscription_ended=c.subscription_ended)
    total = historic + (predicted or ZERO)
    cac = cfg.cac.get(c.channel) if c.channel is not None else None
    ratio = ltv_cac(formula if formula is not None else total, cac)
    segment = None
    if model is not None and model.rfm is not None:
        score = rfm_score(since_last, c.x, float(historic), model.rfm)
        segment = score.segment.value
    return Valuation(
        historic_ltv=historic,
        aov=aov,
        formula_ltv=formula,
        predicted_ltv=predicted,
        total_ltv=total,
        expected_orders=expected_orders,
        p_alive=p_alive,
        churn_risk=risk,
        expected_next_order_at=expected_next_order_at(c.last_order_at, gap),
        segment=segment,
        ltv_cac=None if ratio is None else round(float(ratio), 2),
        days_since_last_order=since_last,
    )


def _subscription_residual(
    c: CustomerFigures, model: ModelSnapshot, cfg: ValuationConfig
) -> Decimal | None:
    """An active subscriber's predicted value from the sBG retention fit of
    their plan: discounted expected residual lifetime x charge x margin.

    Subscription charges are orders too, but BTYD models purchases at a
    steady rate with one dropout; retention by renewal is what a contract
    follows, and its rate rises with tenure (``ltv.sbg``). None when the
    customer holds no running subscription or no fit covers its plan.
    """
    interval, amount = c.subscription_interval, c.subscription_amount
    if not c.subscription_active or interval is None or amount is None:
        return None
    params = model.retention_of(interval, c.subscription_plan)
    if params is None:
        return None
    # The annual discount rate, compounded per billing period.
    per_period = (1 + cfg.discount_rate) ** (PERIOD_DAYS[interval] / 365.25) - 1
    margin = Decimal(1) if cfg.basis is ValueBasis.REVENUE else c.subscription_margin_rate
    lifetime = _derl(params, c.subscription_renewals, per_period)
    residual = lifetime * float(amount) * float(margin or 1)
    return Decimal(repr(residual)) if math.isfinite(residual) else None


@lru_cache(maxsize=8192)
def _derl(params: SBGParams, renewals: int, discount_rate: float) -> float:
    """``ltv.sbg.derl`` of one subscriber, remembered: its continued fraction
    takes milliseconds, while a plan's subscribers share the parameters and
    the rate and differ only in a small number of renewals."""
    return float(derl(params, renewals, discount_rate))


def _formula(
    c: CustomerFigures, model: ModelSnapshot | None, cfg: ValuationConfig, aov: Decimal
) -> Decimal | None:
    """Subscription formula for subscribers once churn is measured, else the order formula."""
    churn = model.subscription_monthly_churn if model is not None else None
    if c.subscription_amount is not None and churn:
        margin = Decimal(1) if cfg.basis is ValueBasis.REVENUE else c.subscription_margin_rate
        return subscription_ltv(c.subscription_amount, margin or Decimal(1), Decimal(repr(churn)))
    tenure = c.T if c.T > 0 else 0
    return customer_formula_ltv(aov, c.orders, tenure, cfg.horizon_days)
