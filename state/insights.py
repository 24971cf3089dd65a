"""Live group aggregates (docs/insights.md): what one customer adds, and the sums.

Exactness and order independence rest on one rule: a partition's aggregate is
the sum of its customers' contributions, and a contribution is a pure
function of the customer's state and last valuation (``Contribution.of``).
Every write of a customer replaces its contribution::

    aggregate.remove(stored_contribution)
    new = Contribution.of(state, valuation, cfg, nps_class)
    aggregate.add(new)        # and store ``new`` with the state, atomically

Sums are integers (money in ``ltv.insights.UNITS``, the state's 4-decimal
quantum), so add and remove are exact and commute: the aggregate is the
same whatever order the writes came in, even a remove before its add, and
the aggregates of partitions merge by addition.

The contribution to remove must be exactly the one added. Predicted LTV,
segment and churn risk come from the valuation, which depended on the clock
and the model of its time, so the old state alone cannot give them back.
The worker therefore stores both next to the state, in the same write: the
valuation part (``Valued.encode``, a few dozen bytes) with the state, so a
write that does not revalue contributes as before; the contribution itself
(``Contribution.encode``) beside it, where the store's write script
subtracts it when the next one arrives (``state.store.sums``). That stays
exact even when the configuration (CAC channels, value basis) changed in
between: each customer is counted as it was last written.

Nothing here depends on a clock: contributions keep every cohort month and
calendar month, and the read side (``ltv.insights``) folds and windows them
as of its own clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import orjson

from ltv.formulas import historic_ltv
from ltv.insights import (
    AGES,
    CUSTOMERS,
    LTV_CAC_TARGET,
    NO_RISK,
    NPS_CLASSES,
    RETENTION_MONTHS,
    SUBS_ACTIVE,
    SUBS_ACTIVE_START,
    SUBS_ENDED,
    SUBS_ENDED_SECONDS,
    TOTAL_CUSTOMERS,
    UNITS,
    UNSCORED,
    InsightsConfig,
    breadth_of,
    cents,
    cohort_key,
    epoch_seconds,
    group_key,
    month_index,
    mrr_key,
)
from ltv.valuation import Valuation
from state.customer import CustomerState, SubscriptionState
from state.fx import MONEY_QUANTUM

# A plan's charge per month (months of 365.25 / 12 days, as the fit job counts).
_PER_MONTH = {
    "day": Decimal("30.4375"),
    "week": Decimal("30.4375") / 7,
    "month": Decimal(1),
    "year": Decimal(1) / 12,
}


#: Sets the amount of a key of the contribution being built (each key once).
_Put = Callable[[str, int], None]


class InsightsError(ValueError):
    """An encoded aggregate or contribution is not one this module wrote."""


def units(amount: Decimal) -> int:
    """Base-currency money as integer units (exact for state figures)."""
    return int(amount.quantize(MONEY_QUANTUM).scaleb(4))


@dataclass(frozen=True, slots=True)
class Valued:
    """The parts of a valuation a contribution reads: predicted LTV in units,
    RFM segment, churn-risk level. A few bytes: stored with the state, they let
    the next write recompute the contribution it removes from the old state."""

    predicted: int = 0
    segment: str | None = None
    risk: str | None = None

    @classmethod
    def of(cls, v: Valuation) -> Valued:
        """The valuation's parts as ``ltv.updates`` publishes them: predicted LTV
        in cents, so that a group's predicted LTV is the sum of its customers'
        published figures."""
        return cls(
            predicted=0 if v.predicted_ltv is None else units(cents(v.predicted_ltv)),
            segment=v.segment,
            risk=None if v.churn_risk is None else v.churn_risk.value,
        )

    def encode(self) -> bytes:
        return orjson.dumps([self.predicted, self.segment, self.risk])

    @classmethod
    def decode(cls, data: bytes) -> Valued:
        try:
            predicted, segment, risk = orjson.loads(data)
        except (orjson.JSONDecodeError, TypeError, ValueError):
            raise InsightsError("not an encoded valuation part") from None
        if type(predicted) is not int or not all(
            x is None or isinstance(x, str) for x in (segment, risk)
        ):
            raise InsightsError("not an encoded valuation part")
        return cls(predicted, segment, risk)


@dataclass(frozen=True, slots=True)
class Contribution:
    """Everything one customer adds to the aggregates: (key, amount) pairs,
    sorted by key, without zeros. Computed once per write and stored with the
    state, so that the next write removes exactly this."""

    sums: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(
        cls,
        state: CustomerState,
        valuation: Valuation | Valued | None,
        cfg: InsightsConfig,
        nps_class: str = "unknown",
    ) -> Contribution:
        """The contribution of ``state`` valued ``valuation`` (None: not valued
        yet, which counts its historic value only, unscored, at its stored risk).
        A ``Valued`` stored with the state gives the same as the ``Valuation``
        it was taken from.

        A customer counts once they have an order not refunded in full; before
        that (and after every order is refunded) they contribute nothing.
        """
        if nps_class not in NPS_CLASSES:
            raise ValueError(f"unknown NPS class {nps_class!r}")
        first = state.first_order_at
        if first is None:
            return cls()
        # Every key below is named once per customer, so plain assignment adds
        # nothing up twice; zeros are dropped at the end.
        out: dict[str, int] = {}
        put = out.__setitem__
        if isinstance(valuation, Valuation):
            valuation = Valued.of(valuation)
        elif valuation is None:
            valuation = Valued(risk=state.risk)
        historic = units(historic_ltv(state.net, state.margin, cfg.basis))
        predicted = valuation.predicted
        total = historic + predicted
        put(TOTAL_CUSTOMERS, 1)

        channel = cfg.channel_of(state.channel)
        cac = cfg.cac.get(channel)
        put(group_key("channel", CUSTOMERS, channel), 1)
        put(group_key("channel", "historic", channel), historic)
        put(group_key("channel", "predicted", channel), predicted)
        put(group_key("channel", "total", channel), total)
        if cac is not None and cac > 0 and total > LTV_CAC_TARGET * cac * UNITS:
            put(group_key("channel", "above_target", channel), 1)

        for group, member in (
            ("breadth", breadth_of(len(state.categories))),
            ("segment", valuation.segment or UNSCORED),
            ("nps", nps_class),
        ):
            put(group_key(group, CUSTOMERS, member), 1)
            put(group_key(group, "total", member), total)
        put(group_key("risk", CUSTOMERS, valuation.risk or NO_RISK), 1)

        _cohort(state, put)
        if state.subscription is not None:
            _subscription(state, state.subscription, put)
        return cls(tuple(sorted(item for item in out.items() if item[1])))

    def encode(self) -> bytes:
        """A flat JSON object of key -> integer: what the store's write script
        reads (``state.store.sums``), so it carries no format wrapper."""
        return orjson.dumps(dict(self.sums))

    @classmethod
    def decode(cls, data: bytes) -> Contribution:
        try:
            sums = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InsightsError(f"not JSON: {exc}") from None
        return cls(tuple(sorted(_checked(sums).items())))


def _cohort(state: CustomerState, put: _Put) -> None:
    """Cohort figures from the live orders: value within each age, the months
    after acquisition with an order, net revenue per calendar month. Summed
    per month first, so that each key is built once per customer."""
    first = state.first_order_at
    assert first is not None
    cohort = month_index(first)
    limits = [first + timedelta(days=age) for age in AGES]
    within = [0] * len(AGES)
    revenue: dict[int, int] = {}
    for e in state.ledger.values():
        if e.cancelled:
            continue
        net = units(e.net)
        month = month_index(e.occurred_at)
        revenue[month] = revenue.get(month, 0) + net
        for i, limit in enumerate(limits):
            if e.occurred_at < limit:
                within[i] += net
    put(cohort_key(cohort, CUSTOMERS), 1)
    for age, net in zip(AGES, within, strict=True):
        put(cohort_key(cohort, "net", age), net)
    # Every month with a live order, also one whose orders are worth 0.
    for month, net in revenue.items():
        put(cohort_key(cohort, "revenue", month - cohort), net)
        if month - cohort < RETENTION_MONTHS:
            put(cohort_key(cohort, "active", month - cohort), 1)


def _subscription(state: CustomerState, sub: SubscriptionState, put: _Put) -> None:
    """Subscriber exposure as the fit job measures it (streams/fit.py), split so
    that no clock is needed: an ended subscription adds its length, a running
    one its start, and the read side adds clock x running subscriptions."""
    mrr = units(sub.amount * _PER_MONTH[sub.interval])
    ended_at = state.subscription_ended_at if state.subscription_churned else None
    if ended_at is None:
        put(SUBS_ACTIVE, 1)
        put(SUBS_ACTIVE_START, epoch_seconds(sub.started_at))
        put(mrr_key(month_index(sub.started_at), None), mrr)
    else:
        put(SUBS_ENDED, 1)
        put(SUBS_ENDED_SECONDS, max(0, epoch_seconds(ended_at) - epoch_seconds(sub.started_at)))
        put(mrr_key(month_index(sub.started_at), month_index(ended_at)), mrr)


class Aggregate(Mapping[str, int]):
    """Integer sums over contributions: one partition's, or a merge of several.

    A group under addition: ``add``, ``remove`` and ``merge`` commute, and a
    sum that reaches 0 is dropped, so equal sums give equal aggregates.
    """

    __slots__ = ("_sums",)

    def __init__(self, sums: Mapping[str, int] | None = None) -> None:
        self._sums: dict[str, int] = {k: v for k, v in (sums or {}).items() if v}

    @classmethod
    def of(cls, contributions: Iterable[Contribution]) -> Aggregate:
        agg = cls()
        for c in contributions:
            agg.add(c)
        return agg

    def __getitem__(self, key: str) -> int:
        return self._sums[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sums)

    def __len__(self) -> int:
        return len(self._sums)

    def __repr__(self) -> str:
        return f"Aggregate({len(self._sums)} sums)"

    def _apply(self, items: Iterable[tuple[str, int]], sign: int) -> None:
        sums = self._sums
        for key, amount in items:
            v = sums.get(key, 0) + sign * amount
            if v:
                sums[key] = v
            else:
                del sums[key]

    def add(self, c: Contribution) -> None:
        self._apply(c.sums, 1)

    def remove(self, c: Contribution) -> None:
        self._apply(c.sums, -1)

    def merge(self, other: Aggregate) -> None:
        """Add another aggregate (another partition's) into this one."""
        self._apply(other._sums.items(), 1)


def _checked(sums: object) -> dict[str, int]:
    if not isinstance(sums, dict) or not all(type(v) is int and v != 0 for v in sums.values()):
        raise InsightsError("sums must be an object of non-zero integers")
    return sums


__all__ = ["Aggregate", "Contribution", "InsightsError", "Valued", "units"]
