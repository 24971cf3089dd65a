"""A small hand-written shop whose insights the table and gauge tests read.

Six customers chosen so that every kind of figure shows up at least once:
a channel above and one below 3:1, channels without a CAC (CAC 0, unknown,
not configured), an ``older`` cohort, ages not reached, an ended and a
running subscription, every NPS class but one. The expected figures are
worked out by hand in the comments (amounts in SEK, the FX table's base).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from domain_histories import apply, make_cancellation, make_purchase

from ltv.formulas import ValueBasis
from ltv.insights import Insights, InsightsConfig, insights
from state.customer import new_state
from state.events import Scope
from state.insights import Aggregate, Contribution, Valued, units

CFG = InsightsConfig(
    basis=ValueBasis.REVENUE,
    cac={"seo": Decimal(15), "paid": Decimal("40.5"), "email": Decimal(0)},
    currency="SEK",
)
CLOCK = datetime(2027, 3, 10, 12, tzinfo=UTC)
_T = datetime(2026, 1, 1, tzinfo=UTC)

#: (at, amount, channel, categories, plan) of one purchase.
Order = tuple[str, str, str | None, Sequence[str], str | None]


def contribution(
    orders: Sequence[Order],
    valued: Valued | None,
    nps: str,
    ended: str | None = None,
    cfg: InsightsConfig = CFG,
) -> Contribution:
    """One customer's contribution: ``orders`` in SEK, a subscription ended at ``ended``."""
    state = new_state("c-1")
    for i, (at, amount, channel, categories, plan) in enumerate(orders):
        minute = int((datetime.fromisoformat(at) - _T) / timedelta(minutes=1))
        fields = (minute, Decimal(amount), "SEK", None, channel, list(categories), plan)
        state = apply(state, make_purchase(i, fields, _T)).state
    if ended is not None:
        minute = int((datetime.fromisoformat(ended) - _T) / timedelta(minutes=1))
        end = make_cancellation(0, "o-0", (minute, None, None, Scope.SUBSCRIPTION), _T)
        state = apply(state, end).state
    return Contribution.of(state, valued, cfg, nps)


def shop() -> Aggregate:
    """The six customers' aggregate."""

    def valued(predicted: int, segment: str | None, risk: str) -> Valued:
        return Valued(units(Decimal(predicted)), segment, risk)

    return Aggregate.of(
        (
            # paid, cohort 2024-11 (older at CLOCK): total 500 + 100 = 600, 2 categories.
            contribution(
                [
                    ("2024-11-20T10:00:00+00:00", "300", "paid", ["books"], None),
                    ("2025-06-10T10:00:00+00:00", "200", None, ["toys"], None),
                ],
                valued(100, "champions", "low"),
                "promoter",
            ),
            # paid, cohort 2025-04: total 180 + 50 = 230. paid: mean 415 / 40.5 = 10.25.
            contribution(
                [
                    ("2025-04-05T10:00:00+00:00", "100", "paid", ["books"], None),
                    ("2026-04-05T10:00:00+00:00", "80", None, ["books"], None),
                ],
                valued(50, "loyal", "medium"),
                "passive",
            ),
            # seo, cohort 2026-06: 20 / 15 = 1.33, below 3:1.
            contribution(
                [("2026-06-01T10:00:00+00:00", "20", "seo", ["food"], None)],
                valued(0, "new", "high"),
                "detractor",
            ),
            # email (CAC 0: no LTV:CAC), cohort 2026-09, never valued, no category.
            contribution([("2026-09-15T10:00:00+00:00", "60", "email", [], None)], None, "unknown"),
            # no channel, a monthly plan from 2026-02-10 ended 2026-12-01: total 60.
            contribution(
                [
                    ("2026-02-10T10:00:00+00:00", "30", None, ["food"], "pro"),
                    ("2026-03-10T10:00:00+00:00", "30", None, ["food"], "pro"),
                ],
                valued(0, None, "churned"),
                "detractor",
                ended="2026-12-01T00:00:00+00:00",
            ),
            # tiktok (not in LTV_CAC: other), a running plan: total 25 + 40 = 65, 3 categories.
            contribution(
                [("2027-01-01T10:00:00+00:00", "25", "tiktok", ["toys", "food", "books"], "basic")],
                valued(40, "champions", "low"),
                "promoter",
            ),
        )
    )


def shop_insights(clock: datetime = CLOCK) -> Insights:
    return insights(shop(), clock, CFG)
