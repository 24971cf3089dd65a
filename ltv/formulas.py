"""Closed-form LTV figures (docs/valuation.md): pure functions of plain numbers.

Money is Decimal in and out (the caller's base currency); ratios that are not money
(frequencies, churn rates, LTV:CAC) may be Decimal or float where noted.  Nothing here
rounds money: rounding to cents is an output concern.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

ZERO = Decimal(0)


class ValueBasis(StrEnum):
    """What a customer is worth: the money they paid, or the margin it earned."""

    REVENUE = "revenue"
    MARGIN = "margin"


def historic_ltv(net_revenue: Decimal, net_margin: Decimal, basis: ValueBasis) -> Decimal:
    """Realised value to date: net of refunds, on the chosen basis."""
    return net_revenue if basis is ValueBasis.REVENUE else net_margin


def average_order_value(net_value: Decimal, orders: int) -> Decimal | None:
    """None for a customer with no (remaining) orders: there is no average."""
    return None if orders <= 0 else net_value / orders


def formula_ltv(aov: Decimal, purchase_frequency: Decimal, expected_lifespan: Decimal) -> Decimal:
    """AOV x purchase frequency x expected lifespan.

    ``purchase_frequency`` is orders per period and ``expected_lifespan`` the number
    of such periods; the caller picks the period (month in the seed example: 500 kr
    a month for 12 months is 6 000 kr)."""
    return aov * purchase_frequency * expected_lifespan


def subscription_ltv(arpu: Decimal, margin_rate: Decimal, churn_rate: Decimal) -> Decimal | None:
    """ARPU x margin / churn rate, all per the same period (the expected lifetime of a
    subscriber is 1 / churn periods).  None when churn is zero: no finite value."""
    if churn_rate <= 0:
        return None
    return arpu * margin_rate / churn_rate


def customer_formula_ltv(
    aov: Decimal,
    orders: int,
    tenure_days: int,
    lifespan_days: int,
    *,
    min_tenure_days: int = 30,
) -> Decimal:
    """The transactional formula for one customer: frequency is orders per day over
    their tenure, floored at ``min_tenure_days`` so that a brand-new customer with two
    orders on day one is not extrapolated to two orders a day for years."""
    # AOV x (orders / tenure) x lifespan, dividing last so that whole results stay exact.
    return aov * orders * lifespan_days / max(tenure_days, min_tenure_days)


def ltv_cac(ltv: Decimal, cac: Decimal | None) -> Decimal | None:
    """LTV:CAC ratio; None when the acquisition cost is unknown or zero."""
    if cac is None or cac <= 0:
        return None
    return ltv / cac


def mean_purchase_gap_days(purchase_days: int, first_day: int, last_day: int) -> float | None:
    """Mean days between distinct purchase days; None for one-time buyers."""
    if purchase_days < 2:
        return None
    return (last_day - first_day) / (purchase_days - 1)


def expected_next_order_at(last_order_at: datetime, mean_gap_days: float | None) -> datetime | None:
    """Last order plus the customer's mean inter-purchase gap (None: no gap known)."""
    if mean_gap_days is None:
        return None
    return last_order_at + timedelta(days=mean_gap_days)
