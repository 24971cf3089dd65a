"""The group insights as plain-text tables, for a terminal (docs/insights.md).

``render`` is a pure function of an ``Insights`` value: no I/O, no clock, no
settings. Where the figures come from (the merged aggregates, read as of a
clock) and where the text goes (a terminal, a log, an HTTP text body) are
the caller's business, so one layout serves all of them and is tested on
exact strings.

It shows what a marketing or finance reader asks about, in the base
currency, money with two decimals and shares as percentages. A null figure
(no CAC, an age or month not reached, no prior revenue) is ``-``, never 0.
Lines stay within 100 columns up to means of 99,999.99 per customer:
labels longer than ``LABEL_WIDTH`` are cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from decimal import Decimal

from ltv.insights import (
    AGES,
    LTV_CAC_TARGET,
    NO_RISK,
    ChannelFigures,
    ChurnFigures,
    CohortFigures,
    GroupFigures,
    Insights,
    NrrFigures,
    ratio,
)
from ltv.risk import RiskLevel

__all__ = ["LABEL_WIDTH", "NULL", "RETENTION_SHOWN", "render"]

#: How a null figure reads.
NULL = "-"
#: Months after acquisition whose retention the cohort table shows.
RETENTION_SHOWN = (0, 1, 2, 3, 6, 12)
#: Longest label (channel, segment) shown whole; longer ones end in ``~``.
LABEL_WIDTH = 20
_BELOW = " *"
_GAP = "  "


def render(insights: Insights) -> str:
    """Every figure group of ``insights`` as aligned tables, one after another."""
    as_of = insights.as_of.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    header = (
        f"Insights as of {as_of}   currency {insights.currency}   customers {insights.customers:,}"
    )
    sections = [
        [header],
        _channels(insights.channels, insights.currency),
        _cohorts(insights.cohorts),
        _nrr(insights.nrr),
        _groups(
            "Category breadth (mean total LTV per customer)",
            ("categories", "customers", "mean LTV", "vs 1 category"),
            insights.breadth,
        ),
        _groups(
            "NPS class (mean total LTV per customer)",
            ("NPS class", "customers", "mean LTV", "vs detractors"),
            insights.nps,
            [f"promoter:detractor mean LTV ratio {_times(insights.promoter_detractor_ratio)}"],
        ),
        _table(
            "RFM segments (mean total LTV per customer)",
            ("segment", "customers", "mean LTV"),
            [(g.member, f"{g.customers:,}", _money(g.mean_total_ltv)) for g in insights.segments],
        ),
        _churn(insights.churn),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


# ------------------------------------------------------------------ sections


def _channels(channels: Sequence[ChannelFigures], currency: str) -> list[str]:
    rows = [
        (
            c.channel,
            f"{c.customers:,}",
            _money(c.mean_historic_ltv),
            _money(c.mean_predicted_ltv),
            _money(c.mean_total_ltv),
            _money(c.cac),
            _ltv_cac(c.ltv_cac),
            _pct(c.share_above_target),
        )
        for c in channels
    ]
    return _table(
        f"LTV:CAC by acquisition channel (mean LTV per customer, {currency})",
        ("channel", "customers", "historic", "predicted", "total", "CAC", "LTV:CAC", "above 3:1"),
        rows,
        [
            f"{_BELOW.strip()} below the {LTV_CAC_TARGET}:1 target",
            f"above {LTV_CAC_TARGET}:1: share of customers whose own total LTV is over "
            f"{LTV_CAC_TARGET} x CAC",
        ],
    )


def _cohorts(cohorts: Sequence[CohortFigures]) -> list[str]:
    rows = [
        (
            c.cohort,
            f"{c.customers:,}",
            *(_money(c.net_per_customer.get(age)) for age in AGES),
            *(_pct(c.retention[k], 0) for k in RETENTION_SHOWN),
        )
        for c in cohorts
    ]
    return _table(
        "Cohorts by first-order month: net revenue per customer by age, retention by month",
        (
            "cohort",
            "customers",
            *(f"{age}d" for age in AGES),
            *(f"m{k}" for k in RETENTION_SHOWN),
        ),
        rows,
        [f"{NULL} not reached yet: the whole cohort is not that old, or the month has not ended"],
    )


def _nrr(nrr: NrrFigures) -> list[str]:
    return _table(
        f"Net revenue retention, {nrr.window_start} to {nrr.window_end}",
        ("basis", "before", "after", "NRR"),
        [
            (
                "revenue",
                _money(nrr.revenue_prior),
                _money(nrr.revenue_current),
                _pct(nrr.revenue_nrr),
            ),
            ("MRR", _money(nrr.mrr_start), _money(nrr.mrr_end), _pct(nrr.mrr_nrr)),
        ],
        [
            f"base: the customers (subscriptions) acquired before {nrr.window_start}",
            "revenue: the base's net revenue in the 12 months before vs in the window",
            "MRR: the base's MRR running at the window's start vs at its end",
        ],
    )


def _groups(
    title: str,
    columns: Sequence[str],
    members: Sequence[GroupFigures],
    notes: Sequence[str] = (),
) -> list[str]:
    rows = [
        (g.member, f"{g.customers:,}", _money(g.mean_total_ltv), _times(g.ratio)) for g in members
    ]
    return _table(title, columns, rows, notes)


def _churn(churn: ChurnFigures) -> list[str]:
    lines = [
        "Churn",
        *_facts(
            [
                (
                    "subscription monthly churn",
                    _pct(churn.subscription_monthly_churn, 2),
                    f"{churn.subscribers_ended:,} ended in "
                    f"{churn.subscriber_months:,.1f} subscriber-months, "
                    f"{churn.subscribers_active:,} running",
                ),
                (
                    "churned share",
                    _pct(churn.churned_share),
                    f"{churn.churned:,} of {churn.customers:,} customers: subscription ended",
                ),
                (
                    "inactivity churn rate",
                    _pct(churn.inactivity_churn_rate),
                    f"{churn.risk.get('high', 0):,} of {churn.customers:,} customers at high risk",
                ),
            ]
        ),
        "",
    ]
    order = [*(level.value for level in RiskLevel), NO_RISK]
    levels = [level for level in order if level in churn.risk]
    levels += sorted(churn.risk.keys() - set(order))
    lines += _table(
        "Customers by churn risk (high: likely inactive, the inactivity signal)",
        ("churn risk", "customers", "share"),
        [
            (
                level,
                f"{churn.risk[level]:,}",
                _pct(ratio(churn.risk[level], churn.customers)),
            )
            for level in levels
        ],
    )
    lines.append("")
    w = churn.what_if
    if w is None:
        lines.append(f"What-if: {NULL} (no subscription churn rate or no running subscription)")
        return lines
    lines += _table(
        f"What-if: subscription LTV = ARPU x margin / monthly churn "
        f"(ARPU {_money(w.arpu)}, margin {w.margin})",
        ("scenario", "monthly churn", "LTV"),
        [
            ("now", _pct(w.churn, 2), _money(w.ltv)),
            ("churn 5 points lower", _pct(w.churn_after, 2), _money(w.ltv_after)),
        ],
        [f"uplift: {NULL if w.uplift_pct is None else f'{w.uplift_pct:+,.2f}%'}"],
    )
    return lines


# ------------------------------------------------------------------ layout


def _table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    notes: Sequence[str] = (),
) -> list[str]:
    """``title``, then the header and rows: the first column left-aligned (labels),
    the others right-aligned (figures), two spaces apart."""
    if not rows:
        return [title, f"{_GAP}(no customers)"]
    cells = [list(columns), *([_label(row[0]), *row[1:]] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [title]
    for line in cells:
        first = line[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True))
        lines.append(_GAP + _GAP.join((first, *rest)))
    lines += (_GAP + note for note in notes)
    return lines


def _facts(rows: Sequence[tuple[str, str, str]]) -> list[str]:
    """(name, figure, detail) lines: names and figures aligned, details after."""
    name_width = max(len(name) for name, _, _ in rows)
    figure_width = max(len(figure) for _, figure, _ in rows)
    return [
        f"{_GAP}{name.ljust(name_width)}{_GAP}{figure.rjust(figure_width)}{_GAP}{detail}"
        for name, figure, detail in rows
    ]


def _label(text: str) -> str:
    return text if len(text) <= LABEL_WIDTH else text[: LABEL_WIDTH - 1] + "~"


def _money(amount: Decimal | None) -> str:
    return NULL if amount is None else f"{amount:,.2f}"


def _pct(share: float | None, places: int = 1) -> str:
    return NULL if share is None else f"{share * 100:.{places}f}%"


def _times(value: float | None) -> str:
    return NULL if value is None else f"{value:.2f}x"


def _ltv_cac(value: float | None) -> str:
    """Two decimals, and a mark when below the target (kept aligned when there is none)."""
    if value is None:
        return NULL + " " * len(_BELOW)
    return f"{value:,.2f}" + (_BELOW if value < LTV_CAC_TARGET else " " * len(_BELOW))
