"""Group figures over the live aggregates (docs/insights.md): the read side.

An aggregate is a map of integer sums keyed by flat strings. This module owns
that key layout (``*_key`` below, used by ``state.insights`` to build a
customer's contribution) and turns the sums into figures as of a read clock.
Keeping the sums plain integers is what makes the aggregates exact: adding and
removing contributions commutes, so a partition's aggregate is the same
whatever order its writes came in, and partitions merge by addition.

Everything that depends on the read clock is decided here, never in the sums:
which cohort ages and retention months have been reached, which cohorts are
folded into ``older``, the NRR windows, the subscriber-months of running
subscriptions. Figures that depend on the valuation clock (predicted LTV,
RFM segment, churn risk) are as of each customer's last valuation.

Money in the sums is in ``UNITS`` per unit of the base currency: the state's
own quantum (``state.fx.MONEY_QUANTUM``, 4 decimals), so every figure of a
state is an exact integer there and nothing is rounded before output. The
figures render money rounded half-even to cents, ratios rounded to 4 decimals.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache
from typing import Any

import orjson

from ltv.formulas import ValueBasis, subscription_ltv

#: Money units per unit of the base currency (4 decimals, as the state keeps it).
UNITS = 10_000
#: Ages (days since the first order) of the cumulative cohort value curve.
AGES = (30, 90, 180, 365)
#: Retention is reported for months 0..RETENTION_MONTHS-1 after acquisition.
RETENTION_MONTHS = 24
#: Cohorts shown one by one at read time (the clock's month and the 23 before).
COHORT_MONTHS = 24
#: Length of each of the two NRR windows, in calendar months.
NRR_MONTHS = 12
#: The LTV:CAC ratio a healthy acquisition channel is expected to beat.
LTV_CAC_TARGET = 3
#: The what-if lowers the subscription monthly churn by this much (5 points).
WHAT_IF_CHURN_DROP = Decimal("0.05")
#: A month of 365.25 / 12 days, in seconds (the fit job's subscriber-month).
SECONDS_PER_MONTH = 2_629_800

UNKNOWN_CHANNEL = "unknown"
OTHER_CHANNEL = "other"
UNSCORED = "unscored"
NO_RISK = "none"
OLDER = "older"
OPEN = "open"
NPS_CLASSES = ("promoter", "passive", "detractor", "unknown")
BREADTHS = ("none", "1", "2", "3+")

_CENT = Decimal("0.01")


# ------------------------------------------------------------------ key layout


def month_index(at: datetime) -> int:
    """Months since year 0 of ``at``'s UTC calendar month."""
    at = at.astimezone(UTC)
    return at.year * 12 + at.month - 1


@cache
def month_name(index: int) -> str:
    """``YYYY-MM`` of a month index (cached: every contribution names a few)."""
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _month_of_name(name: str) -> int:
    year, month = name.split("-")
    return int(year) * 12 + int(month) - 1


def _month_start(index: int) -> datetime:
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


# Keys are stored once per customer (with its contribution) and once per
# partition, so groups and figures go by short codes there; the parsed sums
# use the names.
_CODES = {
    "channel": "ch",
    "breadth": "br",
    "segment": "sg",
    "nps": "np",
    "risk": "rk",
    "customers": "n",
    "historic": "h",
    "predicted": "p",
    "total": "t",
    "above_target": "a",
    "net": "v",
    "revenue": "r",
    "active": "m",
}
_NAMES = {code: name for name, code in _CODES.items()}
_GROUPS = frozenset(_CODES[g] for g in ("channel", "breadth", "segment", "nps", "risk"))
_COHORT, _MRR = "co", "mr"


def group_key(group: str, figure: str, member: str) -> str:
    """A figure of one member of a group (channel, breadth, segment, nps, risk).
    The member is last: a channel name may hold any character."""
    return f"{_CODES[group]}|{_CODES[figure]}|{member}"


def cohort_key(cohort: int, figure: str, arg: int | None = None) -> str:
    """A figure of one acquisition-month cohort; ``arg`` is the age in days, or
    the month after acquisition (0: the cohort's own month)."""
    base = f"{_COHORT}|{month_name(cohort)}|{_CODES[figure]}"
    return base if arg is None else f"{base}|{arg}"


def mrr_key(start: int, end: int | None) -> str:
    """Monthly recurring revenue of subscriptions started and ended in these months."""
    return f"{_MRR}|{month_name(start)}|{OPEN if end is None else month_name(end)}"


CUSTOMERS = "customers"
#: The key of the number of customers counted.
TOTAL_CUSTOMERS = "n"
SUBS_ACTIVE = "su|a"
SUBS_ACTIVE_START = "su|as"
SUBS_ENDED = "su|e"
SUBS_ENDED_SECONDS = "su|es"


def breadth_of(categories: int) -> str:
    """The category-breadth bucket of a customer who bought ``categories`` distinct ones."""
    return BREADTHS[min(categories, 3)]


def nps_class(score: int | None) -> str:
    """NPS class of the latest feedback score (0-10; None: no feedback)."""
    if score is None:
        return "unknown"
    if not 0 <= score <= 10:
        raise ValueError(f"NPS score must be 0..10, got {score}")
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


@dataclass(frozen=True, slots=True)
class InsightsConfig:
    """What contributions and figures need from the configuration.

    ``cac`` is ``LTV_CAC``; its channels, plus ``other`` and ``unknown``, are the
    channel keys, which bounds them. ``subscription_margin`` is the margin of
    the seed formula: 1 on the revenue basis, ``LTV_DEFAULT_MARGIN`` on the
    margin basis (as in docs/valuation.md).
    """

    basis: ValueBasis = ValueBasis.REVENUE
    cac: Mapping[str, Decimal] = field(default_factory=dict)
    subscription_margin: Decimal = Decimal(1)
    currency: str = "USD"

    def channel_of(self, channel: str | None) -> str:
        """The channel key of an acquisition channel."""
        if channel is None:
            return UNKNOWN_CHANNEL
        return channel if channel in self.cac else OTHER_CHANNEL


# ------------------------------------------------------------------ figures


@dataclass(frozen=True, slots=True)
class ChannelFigures:
    channel: str
    customers: int
    historic_ltv: Decimal
    predicted_ltv: Decimal
    total_ltv: Decimal
    mean_historic_ltv: Decimal
    mean_predicted_ltv: Decimal
    mean_total_ltv: Decimal
    cac: Decimal | None
    ltv_cac: float | None
    share_above_target: float | None


@dataclass(frozen=True, slots=True)
class CohortFigures:
    """``net_per_customer[age]``: null until every customer of the cohort is that
    old; ``retention[k]``: null until month k after acquisition has ended."""

    cohort: str
    customers: int
    net_per_customer: dict[int, Decimal | None]
    retention: tuple[float | None, ...]


@dataclass(frozen=True, slots=True)
class NrrFigures:
    window_start: str
    window_end: str
    revenue_prior: Decimal
    revenue_current: Decimal
    revenue_nrr: float | None
    mrr_start: Decimal
    mrr_end: Decimal
    mrr_nrr: float | None


@dataclass(frozen=True, slots=True)
class GroupFigures:
    """One member of a breadth, segment or NPS group. ``ratio`` is its mean
    total LTV over the reference member's (single-category; detractors)."""

    member: str
    customers: int
    total_ltv: Decimal
    mean_total_ltv: Decimal
    ratio: float | None = None


@dataclass(frozen=True, slots=True)
class WhatIf:
    arpu: Decimal
    margin: Decimal
    churn: float
    ltv: Decimal
    churn_after: float | None
    ltv_after: Decimal | None
    uplift_pct: float | None


@dataclass(frozen=True, slots=True)
class ChurnFigures:
    subscribers_active: int
    subscribers_ended: int
    subscriber_months: float
    subscription_monthly_churn: float | None
    customers: int
    churned: int
    churned_share: float | None
    inactivity_churn_rate: float | None
    risk: dict[str, int]
    what_if: WhatIf | None


@dataclass(frozen=True, slots=True)
class Insights:
    as_of: datetime
    currency: str
    customers: int
    channels: tuple[ChannelFigures, ...]
    cohorts: tuple[CohortFigures, ...]
    nrr: NrrFigures
    breadth: tuple[GroupFigures, ...]
    segments: tuple[GroupFigures, ...]
    nps: tuple[GroupFigures, ...]
    promoter_detractor_ratio: float | None
    churn: ChurnFigures

    def to_json(self) -> bytes:
        """Compact JSON: money as decimal strings with two decimals, times in UTC with
        ``Z`` (docs/insights.md)."""
        return orjson.dumps(
            asdict(self), default=_json_default, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z
        )


def _json_default(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(type(value).__name__)


def cents(amount: Decimal) -> Decimal:
    """Rounded half-even to cents: rounding is an output concern."""
    return amount.quantize(_CENT, rounding=ROUND_HALF_EVEN)


def money(units: int) -> Decimal:
    """Integer units as base currency, rounded to cents for output."""
    return cents(Decimal(units).scaleb(-4))


def mean_money(units: int, n: int) -> Decimal:
    """Mean of ``units`` over ``n`` customers, in cents (0 for no customers)."""
    if n <= 0:
        return Decimal("0.00")
    return cents(Decimal(units).scaleb(-4) / n)


def ratio(numerator: int | Decimal, denominator: int | Decimal) -> float | None:
    """``numerator / denominator`` rounded to 4 decimals; None when undefined."""
    if denominator == 0:
        return None
    return round(float(Decimal(numerator) / Decimal(denominator)), 4)


@dataclass
class _Cohort:
    customers: int = 0
    net: dict[int, int] = field(default_factory=dict)
    active: dict[int, int] = field(default_factory=dict)
    revenue: dict[int, int] = field(default_factory=dict)

    def fold(self, other: _Cohort) -> None:
        self.customers += other.customers
        for mine, theirs in ((self.net, other.net), (self.active, other.active)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v


@dataclass
class _Parsed:
    totals: dict[str, int] = field(default_factory=dict)
    groups: dict[str, dict[str, dict[str, int]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(dict))
    )
    cohorts: dict[int, _Cohort] = field(default_factory=lambda: defaultdict(_Cohort))
    mrr: dict[tuple[int, int | None], int] = field(default_factory=dict)


def _parse(sums: Mapping[str, int]) -> _Parsed:
    p = _Parsed()
    for key, v in sums.items():
        head, _, rest = key.partition("|")
        if head == _COHORT:
            name, code, *arg = rest.split("|")
            cohort = _month_of_name(name)
            c, figure = p.cohorts[cohort], _NAMES[code]
            if figure == CUSTOMERS:
                c.customers = v
            elif figure == "net":
                c.net[int(arg[0])] = v
            elif figure == "active":
                c.active[int(arg[0])] = v
            else:
                c.revenue[cohort + int(arg[0])] = v
        elif head == _MRR:
            start, end = rest.split("|")
            p.mrr[_month_of_name(start), None if end == OPEN else _month_of_name(end)] = v
        elif head in _GROUPS:
            code, _, member = rest.partition("|")
            p.groups[_NAMES[head]][member][_NAMES[code]] = v
        else:
            p.totals[key] = v
    return p


def insights(sums: Mapping[str, int], clock: datetime, cfg: InsightsConfig) -> Insights:
    """The group figures of an aggregate (one partition's, or a merge) as of ``clock``.

    ``clock`` should not precede the events in the aggregate: like the fit job,
    the sums hold each customer's state now, not a history to rewind.
    """
    p = _parse(sums)
    now = month_index(clock)
    nps = _members(p.groups["nps"], NPS_CLASSES, "detractor")
    promoter = next((g for g in nps if g.member == "promoter"), None)
    return Insights(
        as_of=clock,
        currency=cfg.currency,
        customers=p.totals.get(TOTAL_CUSTOMERS, 0),
        channels=tuple(_channel(ch, f, cfg) for ch, f in sorted(p.groups["channel"].items())),
        cohorts=_cohorts(p.cohorts, now, clock),
        nrr=_nrr(p, now),
        breadth=_members(p.groups["breadth"], BREADTHS, "1"),
        segments=_members(p.groups["segment"], sorted(p.groups["segment"]), None),
        nps=nps,
        promoter_detractor_ratio=None if promoter is None else promoter.ratio,
        churn=_churn(p, clock, cfg),
    )


def _channel(channel: str, f: Mapping[str, int], cfg: InsightsConfig) -> ChannelFigures:
    n = f.get(CUSTOMERS, 0)
    total = f.get("total", 0)
    cac = cfg.cac.get(channel)
    priced = cac is not None and cac > 0
    return ChannelFigures(
        channel=channel,
        customers=n,
        historic_ltv=money(f.get("historic", 0)),
        predicted_ltv=money(f.get("predicted", 0)),
        total_ltv=money(total),
        mean_historic_ltv=mean_money(f.get("historic", 0), n),
        mean_predicted_ltv=mean_money(f.get("predicted", 0), n),
        mean_total_ltv=mean_money(total, n),
        cac=cac,
        # Mean total LTV / CAC, from the exact sums: total / (n x CAC).
        ltv_cac=ratio(total, n * cac * UNITS) if priced and cac is not None and n else None,
        share_above_target=ratio(f.get("above_target", 0), n) if priced else None,
    )


def _members(
    group: Mapping[str, Mapping[str, int]], order: tuple[str, ...] | list[str], ref: str | None
) -> tuple[GroupFigures, ...]:
    """Members present in ``group``, in ``order``, with the ratio to ``ref``'s mean."""
    ref_f = group.get(ref) if ref is not None else None
    ref_total = ref_f.get("total", 0) if ref_f else 0
    ref_n = ref_f.get(CUSTOMERS, 0) if ref_f else 0
    out = []
    for member in order:
        f = group.get(member)
        if not f or not f.get(CUSTOMERS):
            continue
        n, total = f[CUSTOMERS], f.get("total", 0)
        out.append(
            GroupFigures(
                member=member,
                customers=n,
                total_ltv=money(total),
                mean_total_ltv=mean_money(total, n),
                # (total / n) / (ref_total / ref_n), kept in integers until the end.
                ratio=ratio(total * ref_n, ref_total * n) if ref is not None and ref_n else None,
            )
        )
    return tuple(out)


def _cohorts(
    cohorts: Mapping[int, _Cohort], now: int, clock: datetime
) -> tuple[CohortFigures, ...]:
    """Cohorts of the last ``COHORT_MONTHS`` months one by one, older ones folded."""
    first_shown = now - COHORT_MONTHS + 1
    older = _Cohort()
    shown: list[tuple[str, int, _Cohort]] = []
    for month in sorted(cohorts):
        if month < first_shown:
            older.fold(cohorts[month])
        else:
            shown.append((month_name(month), month, cohorts[month]))
    if older.customers:
        # Every folded cohort has reached every age and month: judge them as
        # the newest cohort that could be folded.
        shown.insert(0, (OLDER, first_shown - 1, older))
    return tuple(_cohort(name, month, c, now, clock) for name, month, c in shown if c.customers)


def _cohort(name: str, month: int, c: _Cohort, now: int, clock: datetime) -> CohortFigures:
    last_first_order = _month_start(month + 1)
    return CohortFigures(
        cohort=name,
        customers=c.customers,
        net_per_customer={
            age: mean_money(c.net.get(age, 0), c.customers)
            if clock >= last_first_order + timedelta(days=age)
            else None
            for age in AGES
        },
        retention=tuple(
            ratio(c.active.get(k, 0), c.customers) if month + k < now else None
            for k in range(RETENTION_MONTHS)
        ),
    )


def _nrr(p: _Parsed, now: int) -> NrrFigures:
    """Current window: the 12 complete months before the clock's month; prior: the
    12 before those; base: customers (subscriptions) acquired before the current
    window. MRR is taken at the end of the month before each window."""
    start = now - NRR_MONTHS
    prior = range(start - NRR_MONTHS, start)
    current = range(start, now)
    base = [c for month, c in p.cohorts.items() if month < start]
    rev_prior = sum(v for c in base for m, v in c.revenue.items() if m in prior)
    rev_current = sum(v for c in base for m, v in c.revenue.items() if m in current)
    mrr_base = {k: v for k, v in p.mrr.items() if k[0] < start}
    mrr_start = sum(v for (_, end), v in mrr_base.items() if end is None or end >= start)
    mrr_end = sum(v for (_, end), v in mrr_base.items() if end is None or end >= now)
    return NrrFigures(
        window_start=month_name(start),
        window_end=month_name(now - 1),
        revenue_prior=money(rev_prior),
        revenue_current=money(rev_current),
        revenue_nrr=ratio(rev_current, rev_prior),
        mrr_start=money(mrr_start),
        mrr_end=money(mrr_end),
        mrr_nrr=ratio(mrr_end, mrr_start),
    )


def _churn(p: _Parsed, clock: datetime, cfg: InsightsConfig) -> ChurnFigures:
    t = p.totals
    active, ended = t.get(SUBS_ACTIVE, 0), t.get(SUBS_ENDED, 0)
    clock_s = epoch_seconds(clock)
    seconds = t.get(SUBS_ENDED_SECONDS, 0) + active * clock_s - t.get(SUBS_ACTIVE_START, 0)
    churn = ended * SECONDS_PER_MONTH / seconds if seconds > 0 else None
    customers = t.get(TOTAL_CUSTOMERS, 0)
    risk = {level: f.get(CUSTOMERS, 0) for level, f in sorted(p.groups["risk"].items())}
    churned = risk.get("churned", 0)
    open_mrr = sum(v for (_, end), v in p.mrr.items() if end is None)
    return ChurnFigures(
        subscribers_active=active,
        subscribers_ended=ended,
        subscriber_months=round(seconds / SECONDS_PER_MONTH, 2),
        subscription_monthly_churn=None if churn is None else round(churn, 6),
        customers=customers,
        churned=churned,
        churned_share=ratio(churned, customers),
        inactivity_churn_rate=ratio(risk.get("high", 0), customers),
        risk=risk,
        what_if=_what_if(open_mrr, active, churn, cfg.subscription_margin),
    )


def _what_if(open_mrr: int, active: int, churn: float | None, margin: Decimal) -> WhatIf | None:
    """The seed formula ARPU x margin / churn, now and with churn 5 points lower."""
    if churn is None or churn <= 0 or active == 0:
        return None
    arpu = Decimal(open_mrr).scaleb(-4) / active
    rate = Decimal(repr(round(churn, 6)))
    ltv = subscription_ltv(arpu, margin, rate)
    after = rate - WHAT_IF_CHURN_DROP
    ltv_after = subscription_ltv(arpu, margin, after)
    if ltv is None:
        return None
    return WhatIf(
        arpu=cents(arpu),
        margin=margin,
        churn=float(rate),
        ltv=cents(ltv),
        churn_after=float(after) if after > 0 else None,
        ltv_after=None if ltv_after is None else cents(ltv_after),
        uplift_pct=None
        if ltv_after is None or ltv == 0
        else round(float((ltv_after / ltv - 1) * 100), 2),
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_seconds(at: datetime) -> int:
    """Whole seconds since the epoch: subscription exposure is summed in these."""
    return (at - _EPOCH) // timedelta(seconds=1)
