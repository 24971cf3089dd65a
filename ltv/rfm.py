"""RFM scores and named segments (docs/valuation.md).

Scores are 1-5 against quintile edges fitted on the population (the model-fit job
stores them).  Recency is days since the last order, so fewer days score higher.
Segments use the common recency x frequency grid (monetary is reported, not used
for naming), which names every one of the 25 cells.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt


class Segment(StrEnum):
    CHAMPIONS = "champions"
    LOYAL = "loyal"
    POTENTIAL_LOYALISTS = "potential_loyalists"
    NEW = "new"
    PROMISING = "promising"
    NEED_ATTENTION = "need_attention"
    ABOUT_TO_SLEEP = "about_to_sleep"
    AT_RISK = "at_risk"
    CANT_LOSE = "cant_lose"
    HIBERNATING = "hibernating"


Edges = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class RfmEdges:
    """Quintile cut points (20/40/60/80 %) of recency days, frequency and monetary."""

    recency: Edges
    frequency: Edges
    monetary: Edges


def quintile_edges(values: Sequence[float] | npt.NDArray[np.float64]) -> Edges:
    """The 20/40/60/80 % points of ``values`` (nearest-rank, no interpolation, so an
    edge is always a value that occurs).  Sorted as a float array: the fit job
    passes a million-customer column, which must not become Python objects."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = len(ordered)
    if not n:
        raise ValueError("quintile edges of an empty population")
    e = [float(ordered[min(n - 1, (n * k) // 5)]) for k in (1, 2, 3, 4)]
    return (e[0], e[1], e[2], e[3])


def quintile_score(value: float, edges: Edges) -> int:
    """1 + the number of edges strictly below ``value`` (1..5); higher value, higher score."""
    return 1 + bisect_left(edges, value)


@dataclass(frozen=True, slots=True)
class RfmScore:
    recency: int
    frequency: int
    monetary: int

    @property
    def segment(self) -> Segment:
        return segment_of(self.recency, self.frequency)


def rfm_score(
    days_since_last: float, frequency: float, monetary: float, edges: RfmEdges
) -> RfmScore:
    return RfmScore(
        recency=6 - quintile_score(days_since_last, edges.recency),
        frequency=quintile_score(frequency, edges.frequency),
        monetary=quintile_score(monetary, edges.monetary),
    )


_S = Segment
# Rows: recency score 1..5; columns: frequency score 1..5.
_GRID: tuple[tuple[Segment, ...], ...] = (
    (_S.HIBERNATING, _S.HIBERNATING, _S.AT_RISK, _S.AT_RISK, _S.CANT_LOSE),
    (_S.HIBERNATING, _S.HIBERNATING, _S.AT_RISK, _S.AT_RISK, _S.CANT_LOSE),
    (_S.ABOUT_TO_SLEEP, _S.ABOUT_TO_SLEEP, _S.NEED_ATTENTION, _S.LOYAL, _S.LOYAL),
    (_S.PROMISING, _S.POTENTIAL_LOYALISTS, _S.POTENTIAL_LOYALISTS, _S.LOYAL, _S.LOYAL),
    (_S.NEW, _S.POTENTIAL_LOYALISTS, _S.POTENTIAL_LOYALISTS, _S.CHAMPIONS, _S.CHAMPIONS),
)


def segment_of(recency_score: int, frequency_score: int) -> Segment:
    if not (1 <= recency_score <= 5 and 1 <= frequency_score <= 5):
        raise ValueError(f"scores must be 1..5, got R={recency_score} F={frequency_score}")
    return _GRID[recency_score - 1][frequency_score - 1]


def segment_counts(
    days_since_last: npt.ArrayLike, frequency: npt.ArrayLike, edges: RfmEdges
) -> dict[str, int]:
    """Customers per named segment, for a whole population at once (fit time)."""
    recency = 6 - (1 + np.searchsorted(edges.recency, np.asarray(days_since_last), side="left"))
    freq = 1 + np.searchsorted(edges.frequency, np.asarray(frequency), side="left")
    counts = dict.fromkeys((segment.value for segment in Segment), 0)
    cells, n = np.unique(np.column_stack((recency, freq)), axis=0, return_counts=True)
    for (r, f), count in zip(cells.tolist(), n.tolist(), strict=True):
        counts[segment_of(int(r), int(f)).value] += int(count)
    return counts
