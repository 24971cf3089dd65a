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

    def as_json(self) -> dict[str, list[float]]:
        return {
            "recency_days": list(self.recency),
            "frequency": list(self.frequency),
            "monetary": list(self.monetary),
        }

    @classmethod
    def from_json(cls, doc: dict[str, list[float]]) -> RfmEdges:
        return cls(
            recency=_edges(doc["recency_days"]),
            frequency=_edges(doc["frequency"]),
            monetary=_edges(doc["monetary"]),
        )


def _edges(values: Sequence[float]) -> Edges:
    a, b, c, d = (float(v) for v in values)
    return a, b, c, d


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


#: Every segment, in the order ``segment_indices`` numbers them.
SEGMENTS: tuple[Segment, ...] = tuple(Segment)
_GRID_INDEX = np.array([[SEGMENTS.index(cell) for cell in row] for row in _GRID])


def segment_indices(
    days_since_last: npt.ArrayLike, frequency: npt.ArrayLike, edges: RfmEdges
) -> npt.NDArray[np.intp]:
    """Each customer's segment as an index into ``SEGMENTS``, for a whole
    population at once; the same cells as ``rfm_score`` (bisect_left is
    searchsorted's left side)."""
    below_recency = np.searchsorted(edges.recency, np.asarray(days_since_last), side="left")
    below_frequency = np.searchsorted(edges.frequency, np.asarray(frequency), side="left")
    # Recency score 5 - below_recency sits in row 4 - below_recency of the grid.
    cells: npt.NDArray[np.intp] = _GRID_INDEX[4 - below_recency, below_frequency]
    return cells


def segment_counts(
    days_since_last: npt.ArrayLike, frequency: npt.ArrayLike, edges: RfmEdges
) -> dict[str, int]:
    """Customers per named segment, for a whole population at once (fit time)."""
    indices = segment_indices(days_since_last, frequency, edges)
    counts = np.bincount(indices.ravel(), minlength=len(SEGMENTS))
    return {segment.value: int(n) for segment, n in zip(SEGMENTS, counts.tolist(), strict=True)}
