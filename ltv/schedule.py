"""When does a silent customer's churn-risk level change next (docs/output-events.md, inactivity)?

The inactivity timer must not revalue every customer on every tick: its
cost should grow with the customers whose level changes. So each time a
customer is valued, :func:`risk_outlook` works out the first instant at
which ``ltv.valuation.value`` would give a different ``churn_risk`` if no
event arrived, and the worker files the customer under that instant.

Why a search and not a closed form: the level is a step function of time
that is constant between integer day boundaries, and non-decreasing in risk
(low -> medium -> high) as time passes without orders:

* heuristic (no model): level depends on whole days since the last order,
  ``(clock - last_order_at).days``, against 1.5 and 3 mean gaps; it changes
  only at ``last_order_at + k days``;
* fitted orders model (BG/NBD, MBG/NBD, Pareto/NBD): level depends on P(alive | x, t_x, T) with
  ``T = clock day - first purchase day``; for fixed x and t_x P(alive) falls
  as T grows, so the level changes only at a UTC midnight.

The first changing step is found by exponential then binary search over
integer steps (about 2 log2(days) level evaluations, each one scalar
P(alive)), using exactly the functions ``value()`` uses, so the answer
cannot drift from the valuation. With a model the level depends on the age
T alone once (x, t_x) are fixed, so the ages at which it steps (at most two:
below the low, below the medium threshold) are searched once per (model,
thresholds, x, t_x) and memoized; a customer's next change is then the
first of them past its age; a unit test checks that ``value()`` at the
returned instant differs from ``value()`` just before it. Beyond
``max_days`` (10 years) the answer is "never" (None): the customer is not
scheduled, which keeps the schedule free of customers who will not change.
A churned (ended subscription) level never changes with time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache

from ltv.formulas import mean_purchase_gap_days
from ltv.orders import OrdersParams, p_alive_scalar
from ltv.risk import RiskLevel, RiskThresholds, heuristic_risk, risk_from_p_alive
from ltv.valuation import CustomerFigures, ModelSnapshot

__all__ = ["MAX_DAYS", "RiskOutlook", "figures_at", "risk_outlook"]

#: Horizon of the search: a change further away than this is "never".
MAX_DAYS = 3650
#: Ages past t_x over which the steps of a model's level are memoized (100
#: years); a customer older than that falls back to the direct search.
BOUNDARY_SPAN = 36_600


@dataclass(frozen=True, slots=True)
class RiskOutlook:
    """The level as of the clock and its next change without new events.

    ``next_at`` is None when the level does not change within the horizon
    (or the customer has no level); ``next_level`` is the level from then on.
    """

    current: RiskLevel | None
    next_at: datetime | None = None
    next_level: RiskLevel | None = None


def figures_at(c: CustomerFigures, clock: datetime) -> CustomerFigures:
    """The same customer's figures as of another clock (only T depends on it).

    Mirrors ``CustomerState.btyd``: T = clock day - first purchase day, never
    below t_x.
    """
    if c.first_order_at is None:
        return c
    return replace(c, T=_age(_day(c.first_order_at), c.t_x, clock))


def _age(first_day: int, t_x: int, clock: datetime) -> int:
    """T as of ``clock``: days since the first purchase day, never below t_x."""
    return max(_day(clock) - first_day, t_x)


def risk_outlook(
    c: CustomerFigures,
    model: ModelSnapshot | None,
    thresholds: RiskThresholds,
    clock: datetime,
    *,
    max_days: int = MAX_DAYS,
) -> RiskOutlook:
    """The customer's level at ``clock`` and when (and to what) it changes next."""
    last = c.last_order_at
    if last is None or c.orders <= 0:
        return RiskOutlook(None)  # value() gives no level without a live order
    if c.subscription_ended:
        return RiskOutlook(RiskLevel.CHURNED)
    if model is None:
        gap = mean_purchase_gap_days(c.x + 1, 0, c.t_x)

        def by_days_since(days: int) -> RiskLevel:
            return heuristic_risk(days, gap)

        start = max(0, (clock - last).days)
        step = _first_change(by_days_since, start, max_days)
        level = by_days_since(start)
        if step is None:
            return RiskOutlook(level)
        return RiskOutlook(level, last + timedelta(days=step), by_days_since(step))
    params = model.orders_for(c.first_order)
    first_day = _day(c.first_order_at or last)
    start = _age(first_day, c.t_x, clock)
    if start + max_days > c.t_x + BOUNDARY_SPAN:
        return _searched_outlook(params, thresholds, c.x, c.t_x, start, first_day, max_days)
    steps = _age_steps(params, thresholds, c.x, c.t_x)
    level = _level_at_age(start, steps)
    step = next((age for age in steps if age is not None and age > start), None)
    if step is None or step > start + max_days:
        return RiskOutlook(level)
    return RiskOutlook(level, _midnight(first_day + step), _level_at_age(step, steps))


def _level_at_age(age: int, steps: tuple[int | None, int | None]) -> RiskLevel:
    """The level at ``age`` given the ages at which it turns medium and high."""
    medium, high = steps
    if high is not None and age >= high:
        return RiskLevel.HIGH
    if medium is not None and age >= medium:
        return RiskLevel.MEDIUM
    return RiskLevel.LOW


@lru_cache(maxsize=65536)
def _age_steps(
    params: OrdersParams, thresholds: RiskThresholds, x: int, t_x: int
) -> tuple[int | None, int | None]:
    """First ages T >= t_x whose P(alive) is below the low and the medium threshold.

    None: not within ``BOUNDARY_SPAN``. P(alive | x, t_x, T) falls as T grows,
    so each is a binary search over whole days, with the same level function
    as ``value()``.
    """

    def below(threshold: float) -> Callable[[int], bool]:
        return lambda T: p_alive_scalar(params, x, t_x, T) < threshold

    return (
        _first_true(below(thresholds.low_risk), t_x, t_x + BOUNDARY_SPAN),
        _first_true(below(thresholds.medium_risk), t_x, t_x + BOUNDARY_SPAN),
    )


def _first_true(predicate: Callable[[int], bool], low: int, high: int) -> int | None:
    """Smallest n in [low, high] with ``predicate(n)``, for a predicate that stays true."""
    if predicate(low):
        return low
    if not predicate(high):
        return None
    while high - low > 1:  # invariant: not predicate(low), predicate(high)
        middle = (low + high) // 2
        if predicate(middle):
            high = middle
        else:
            low = middle
    return high


def _searched_outlook(
    params: OrdersParams,
    thresholds: RiskThresholds,
    x: int,
    t_x: int,
    start: int,
    first_day: int,
    max_days: int,
) -> RiskOutlook:
    """The outlook by a direct search from ``start`` (ages beyond the memoized span)."""

    def by_age(T: int) -> RiskLevel:
        return risk_from_p_alive(p_alive_scalar(params, x, t_x, T), thresholds)

    step = _first_change(by_age, start, max_days)
    level = by_age(start)
    if step is None:
        return RiskOutlook(level)
    return RiskOutlook(level, _midnight(first_day + step), by_age(step))


def _midnight(day: int) -> datetime:
    return datetime.combine(date.fromordinal(day), time(), UTC)


def _first_change(level: Callable[[int], RiskLevel], start: int, limit: int) -> int | None:
    """Smallest step in (start, start + limit] whose level differs from ``start``'s.

    Assumes the level changes monotonically (once it differs it never comes
    back), which holds for both level functions above.
    """
    base = level(start)
    end = start + limit
    low, width = start, 1
    while True:  # exponential search for a step that differs: invariant level(low) == base
        high = min(start + width, end)
        if level(high) != base:
            break
        if high == end:
            return None
        low, width = high, width * 2
    while high - low > 1:  # binary search: level(low) == base != level(high)
        middle = (low + high) // 2
        if level(middle) == base:
            low = middle
        else:
            high = middle
    return high


def _day(ts: datetime) -> int:
    return ts.date().toordinal()
