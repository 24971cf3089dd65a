"""A mixed stream through a real worker ends in the states an oracle computes.

20 000 events: three years of the synthetic shop sent out of event-time
order (weeks of shuffle, one record in twenty up to a year late), with
re-sent duplicates near and far, cancellations racing their purchases on the
other topic, and 1 % garbage of every failure class (mixed_stream).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from mixed_stream import Report, build_stream, check_dead_letters, check_updates, source_letters
from pipeline_harness import Deployment, consume_raw, produce, require_servers

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

        needed = source_letters(sum(stream.codes.values()))
        dead = await consume_raw(dep.dead_letter, needed, timeout=240, settle=1.0)
        letters = [orjson.loads(letter) for letter in dead]
        check_dead_letters(report, letters, stream.codes, oracle.may_notice)
        updates = await consume_raw(dep.updates, oracle.applied, timeout=240, settle=2.0)
        assert len(updates) == oracle.applied, worker.tail()
        check_updates(report, updates, oracle.states)
        assert not report.problems, report.problems[:10]
        assert report.replayed_outputs == 0
    finally:
        await dep.cleanup()
