"""Churn-risk levels (docs/valuation.md): from P(alive) once a model is fitted, from a gap
heuristic before that, and 'churned' for an ended subscription in either case."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CHURNED = "churned"


@dataclass(frozen=True, slots=True)
class RiskThresholds:
    """P(alive) >= low_risk is low risk, >= medium_risk medium, below that high."""

    low_risk: float = 0.7
    medium_risk: float = 0.3

    def __post_init__(self) -> None:
        if not 0 <= self.medium_risk <= self.low_risk <= 1:
            raise ValueError("need 0 <= medium threshold <= low threshold <= 1")


def risk_from_p_alive(
    p_alive: float, thresholds: RiskThresholds, *, subscription_ended: bool = False
) -> RiskLevel:
    if subscription_ended:
        return RiskLevel.CHURNED
    if p_alive >= thresholds.low_risk:
        return RiskLevel.LOW
    if p_alive >= thresholds.medium_risk:
        return RiskLevel.MEDIUM
    return RiskLevel.HIGH


# Heuristic multiples of the expected gap: a customer is overdue at 1.5 gaps, and
# after 3 gaps has most likely lapsed.  Used only until a BTYD model is fitted.
OVERDUE_GAPS = 1.5
LAPSED_GAPS = 3.0


def heuristic_risk(
    days_since_last_order: float,
    mean_gap_days: float | None,
    *,
    population_gap_days: float = 90.0,
    subscription_ended: bool = False,
) -> RiskLevel:
    """Risk before a model exists: how many of the customer's own mean inter-purchase
    gaps have passed since the last order.  One-time buyers have no gap of their own
    and are measured against ``population_gap_days`` (the population's typical gap).
    Below 1.5 gaps: low; below 3 gaps: medium; else high."""
    if subscription_ended:
        return RiskLevel.CHURNED
    gap = mean_gap_days if mean_gap_days is not None and mean_gap_days > 0 else population_gap_days
    ratio = days_since_last_order / gap
    if ratio < OVERDUE_GAPS:
        return RiskLevel.LOW
    if ratio < LAPSED_GAPS:
        return RiskLevel.MEDIUM
    return RiskLevel.HIGH
