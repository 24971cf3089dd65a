"""A mixed stream through a real worker ends in the states an oracle computes.

20 000 events from the synthetic shop, locally shuffled (out of order within
a customer), with re-sent duplicates, cancellations racing their purchases
on the other topic, and 1 % garbage of every failure class (mixed_stream).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mixed_stream import Report, build_stream, check_dead_letters, check_updates
from pipeline_harness import Deployment, consume, consume_raw, produce, require_servers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

EVENTS = 20_000


async def test_mixed_stream_matches_the_oracle(tmp_path: Path) -> None:
    require_servers()
    dep = Deployment(tmp_path)
    try:
        worker = dep.start_worker()
        stream = build_stream(dep.purchases, dep.cancellations, events=EVENTS, seed=20_000)
        assert len(stream.records) == EVENTS
        await produce(stream.records)
        oracle = stream.oracle()
        report = Report(events_in=EVENTS)

        dead = await consume(dep.dead_letter, sum(stream.codes.values()), timeout=240, settle=1.0)
        check_dead_letters(report, dead, stream.codes)
        updates = await consume_raw(dep.updates, oracle.applied, timeout=240, settle=2.0)
        assert len(updates) == oracle.applied, worker.tail()
        check_updates(report, updates, oracle.states)
        assert not report.problems, report.problems[:10]
        assert report.replayed_outputs == 0
    finally:
        await dep.cleanup()
