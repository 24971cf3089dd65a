"""The independent oracle of the live group figures (docs/insights.md).

It recomputes every figure straight from a list of final customer states and
their last valuations, by dates and Decimal sums, without contributions, keys
or month indices; it shares with the code under test only the result types
and the documented constants (ages, windows, target). The unit tests feed it
scripted histories, the integration tests the states a stream's events give.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from ltv.formulas import ValueBasis
from ltv.insights import (
    AGES,
    COHORT_MONTHS,
    NPS_CLASSES,
    RETENTION_MONTHS,
    ChannelFigures,
    ChurnFigures,
    CohortFigures,
    GroupFigures,
    Insights,
    InsightsConfig,
    NrrFigures,
    WhatIf,
)
from ltv.valuation import Valuation
from state.customer import CustomerState
from state.fx import MONEY_QUANTUM
from streams.fit import monthly_churn, subscription_exposure

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Customer:
    state: CustomerState
    valuation: Valuation | None
    nps: str


# ------------------------------------------------------------------ the oracle


def cents(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_EVEN)


def _mean(total: Decimal, n: int) -> Decimal:
    return cents(total / n) if n else Decimal("0.00")


def _ratio(a: Decimal | int, b: Decimal | int) -> float | None:
    return None if b == 0 else round(float(Decimal(a) / Decimal(b)), 4)


def _months_between(a: datetime, b: datetime) -> int:
    """Calendar months from a's month to b's month."""
    return (b.year - a.year) * 12 + b.month - a.month


def _month_start(at: datetime, plus: int = 0) -> datetime:
    m = at.year * 12 + at.month - 1 + plus
    return datetime(m // 12, m % 12 + 1, 1, tzinfo=UTC)


def _total(c: Customer, cfg: InsightsConfig) -> Decimal:
    s = c.state
    historic = s.net if cfg.basis is ValueBasis.REVENUE else s.margin
    v = c.valuation
    predicted = Decimal(0) if v is None or v.predicted_ltv is None else v.predicted_ltv
    return historic + cents(predicted)


def _historic(c: Customer, cfg: InsightsConfig) -> Decimal:
    return c.state.net if cfg.basis is ValueBasis.REVENUE else c.state.margin


def _group(
    members: dict[str, list[Customer]], order: Sequence[str], ref: str | None, cfg: InsightsConfig
) -> tuple[GroupFigures, ...]:
    def mean_exact(cs: list[Customer]) -> Decimal:
        return sum((_total(c, cfg) for c in cs), Decimal(0)) / len(cs)

    out = []
    for m in order:
        cs = members.get(m)
        if not cs:
            continue
        total = sum((_total(c, cfg) for c in cs), Decimal(0))
        r = None
        if ref is not None and members.get(ref):
            r = _ratio(mean_exact(cs), mean_exact(members[ref]))
        out.append(GroupFigures(m, len(cs), cents(total), _mean(total, len(cs)), r))
    return tuple(out)


def _mrr(s: CustomerState) -> Decimal:
    sub = s.subscription
    assert sub is not None
    month = Decimal("365.25") / 12
    per = {"day": month, "week": month / 7, "month": Decimal(1), "year": 1 / Decimal(12)}
    return (sub.amount * per[sub.interval]).quantize(MONEY_QUANTUM)


def oracle_what_if(arpu: Decimal | None, churn: float | None, margin: Decimal) -> WhatIf | None:
    if arpu is None or churn is None or churn <= 0:
        return None
    rate = Decimal(repr(round(churn, 6)))
    after = rate - Decimal("0.05")
    ltv = arpu * margin / rate
    ltv_after = arpu * margin / after if after > 0 else None
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


def oracle(
    customers: Sequence[Customer],
    clock: datetime,
    cfg: InsightsConfig,
    churn_of: Callable[[int, float], float | None] = monthly_churn,
) -> Insights:
    live = [c for c in customers if c.state.orders > 0]

    def channel(c: Customer) -> str:
        ch = c.state.channel
        return "unknown" if ch is None else ch if ch in cfg.cac else "other"

    by_channel: dict[str, list[Customer]] = defaultdict(list)
    for c in live:
        by_channel[channel(c)].append(c)
    channels = []
    for name in sorted(by_channel):
        cs = by_channel[name]
        n = len(cs)
        hist = sum((_historic(c, cfg) for c in cs), Decimal(0))
        total = sum((_total(c, cfg) for c in cs), Decimal(0))
        cac = cfg.cac.get(name)
        priced = cac is not None and cac > 0
        above = sum(1 for c in cs if priced and cac is not None and _total(c, cfg) > 3 * cac)
        channels.append(
            ChannelFigures(
                name,
                n,
                cents(hist),
                cents(total - hist),
                cents(total),
                _mean(hist, n),
                _mean(total - hist, n),
                _mean(total, n),
                cac,
                _ratio(total / n, cac) if priced and cac is not None else None,
                _ratio(above, n) if priced else None,
            )
        )

    # Cohorts, by the calendar month of the first order; old ones folded.
    oldest_shown = _month_start(clock, -(COHORT_MONTHS - 1))
    cohorts: dict[str, list[Customer]] = defaultdict(list)
    for c in live:
        first = c.state.first_order_at
        assert first is not None
        name = "older" if first < oldest_shown else f"{first.year:04d}-{first.month:02d}"
        cohorts[name].append(c)
    cohort_figures = []
    for name in sorted(cohorts, key=lambda n: "" if n == "older" else n):
        cs = cohorts[name]
        n = len(cs)
        firsts = [c.state.first_order_at for c in cs]
        net_per = {}
        for age in AGES:
            reached = all(clock >= _month_start(f, 1) + timedelta(days=age) for f in firsts if f)
            total = Decimal(0)
            for c in cs:
                f = c.state.first_order_at
                assert f is not None
                total += sum(
                    (
                        e.net
                        for e in c.state.ledger.values()
                        if not e.cancelled and e.occurred_at < f + timedelta(days=age)
                    ),
                    Decimal(0),
                )
            net_per[age] = _mean(total, n) if reached else None
        retention = []
        for k in range(RETENTION_MONTHS):
            ended = all(_month_start(f, k + 1) <= _month_start(clock) for f in firsts if f)
            active = sum(
                1
                for c in cs
                if any(
                    not e.cancelled and _months_between(c.state.first_order_at, e.occurred_at) == k  # type: ignore[arg-type]
                    for e in c.state.ledger.values()
                )
            )
            retention.append(_ratio(active, n) if ended else None)
        cohort_figures.append(CohortFigures(name, n, net_per, tuple(retention)))

    # NRR: current window = the 12 months before the clock's month.
    this_month = _month_start(clock)
    window = _month_start(clock, -12)
    prior = _month_start(clock, -24)
    base = [c for c in live if c.state.first_order_at and c.state.first_order_at < window]

    def revenue(since: datetime, until: datetime) -> Decimal:
        return sum(
            (
                e.net
                for c in base
                for e in c.state.ledger.values()
                if not e.cancelled and since <= e.occurred_at < until
            ),
            Decimal(0),
        )

    rev_prior, rev_current = revenue(prior, window), revenue(window, this_month)
    subs = [c.state for c in live if c.state.subscription is not None]

    def running_at(s: CustomerState, at: datetime) -> bool:
        """Running at the end of the month before ``at``."""
        end = s.subscription_ended_at if s.subscription_churned else None
        return end is None or end >= at

    mrr_base = [s for s in subs if s.subscription and s.subscription.started_at < window]
    mrr_start = sum((_mrr(s) for s in mrr_base if running_at(s, window)), Decimal(0))
    mrr_end = sum((_mrr(s) for s in mrr_base if running_at(s, this_month)), Decimal(0))
    nrr = NrrFigures(
        f"{window.year:04d}-{window.month:02d}",
        f"{(this_month - timedelta(days=1)).year:04d}-{(this_month - timedelta(days=1)).month:02d}",
        cents(rev_prior),
        cents(rev_current),
        _ratio(rev_current, rev_prior),
        cents(mrr_start),
        cents(mrr_end),
        _ratio(mrr_end, mrr_start),
    )

    breadth: dict[str, list[Customer]] = defaultdict(list)
    segments: dict[str, list[Customer]] = defaultdict(list)
    nps: dict[str, list[Customer]] = defaultdict(list)
    risk: dict[str, int] = defaultdict(int)
    for c in live:
        k = len(c.state.categories)
        breadth["none" if k == 0 else "3+" if k >= 3 else str(k)].append(c)
        v = c.valuation
        segments[v.segment if v is not None and v.segment else "unscored"].append(c)
        nps[c.nps].append(c)
        level = (v.churn_risk.value if v.churn_risk else None) if v else c.state.risk
        risk[level or "none"] += 1
    nps_figures = _group(nps, NPS_CLASSES, "detractor", cfg)
    promoter = [g for g in nps_figures if g.member == "promoter"]

    exposures = [e for s in subs if (e := subscription_exposure(s, clock)) is not None]
    ended = sum(1 for done, _ in exposures if done)
    months = sum(m for _, m in exposures)
    churn = churn_of(ended, months)
    running = [s for s in subs if not s.subscription_churned]
    arpu = sum((_mrr(s) for s in running), Decimal(0)) / len(running) if running else None
    return Insights(
        as_of=clock,
        currency=cfg.currency,
        customers=len(live),
        channels=tuple(channels),
        cohorts=tuple(cohort_figures),
        nrr=nrr,
        breadth=_group(breadth, ("none", "1", "2", "3+"), "1", cfg),
        segments=_group(segments, sorted(segments), None, cfg),
        nps=nps_figures,
        promoter_detractor_ratio=promoter[0].ratio if promoter else None,
        churn=ChurnFigures(
            subscribers_active=len(running),
            subscribers_ended=ended,
            subscriber_months=round(months, 2),
            subscription_monthly_churn=None if churn is None else round(churn, 6),
            customers=len(live),
            churned=risk.get("churned", 0),
            churned_share=_ratio(risk.get("churned", 0), len(live)),
            inactivity_churn_rate=_ratio(risk.get("high", 0), len(live)),
            risk=dict(sorted(risk.items())),
            what_if=oracle_what_if(arpu, churn, cfg.subscription_margin),
        ),
    )


def assert_same(
    got: Insights, customers: Sequence[Customer], clock: datetime, cfg: InsightsConfig
) -> None:
    """Equal to the oracle. The subscription churn the fit job sums in floats
    month by month, the aggregate in integer seconds: those agree to 1e-6, and
    the what-if is then checked exactly from the aggregate's own rate."""
    want = oracle(customers, clock, cfg)
    a, b = got.churn.subscription_monthly_churn, want.churn.subscription_monthly_churn
    assert (a is None) == (b is None)
    if a is not None and b is not None:
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
    assert math.isclose(got.churn.subscriber_months, want.churn.subscriber_months, abs_tol=0.011)
    want = oracle(customers, clock, cfg, lambda ended, months: a)
    want = replace(want, churn=replace(want.churn, subscriber_months=got.churn.subscriber_months))
    assert got == want
