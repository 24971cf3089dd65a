"""A partition's event-time progress counts only an unbroken run of offsets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streams import progress
from streams.progress import PartitionProgress

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def test_a_record_beyond_a_hole_waits_until_the_hole_is_filled() -> None:
    p = PartitionProgress()
    p.start(10)
    p.read(10, day(1))
    p.read(13, day(90))  # 11 and 12 not delivered yet
    assert (p.at, p.next_offset) == (day(1), 11)
    p.read(11, day(2))
    assert p.at == day(2)
    p.read(12, None)  # an invalid record: no time, but it fills its offset
    assert (p.at, p.next_offset) == (day(90), 14)


def test_redeliveries_change_nothing_and_a_refetch_fills_the_hole() -> None:
    p = PartitionProgress()
    p.start(0)
    for offset, n in [(0, 5), (1, 6), (3, 50), (4, 51)]:
        p.read(offset, day(n))
    assert p.at == day(6)
    for offset, n in [(0, 5), (1, 6), (2, 7), (3, 50), (4, 51)]:  # sought back to the hole
        p.read(offset, day(n))
    assert (p.at, p.next_offset) == (day(51), 5)


def test_a_start_is_a_clean_slate() -> None:
    p = PartitionProgress()
    p.read(100, day(9))
    assert p.at == day(9)  # never started: the first record starts the run
    p.start(40)
    assert p.at is None
    p.read(41, day(10))
    assert p.at is None
    p.read(40, day(3))
    assert p.at == day(10)


def test_a_hole_that_never_fills_is_taken_for_a_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "MAX_AHEAD", 3)
    p = PartitionProgress()
    p.start(0)
    p.read(0, day(1))
    for offset in (2, 3, 4):
        p.read(offset, day(offset))
    assert p.at == day(1)
    p.read(5, day(5))  # a fourth record behind offset 1: a gap of the topic
    assert (p.at, p.next_offset, p.ahead) == (day(5), 6, {})
