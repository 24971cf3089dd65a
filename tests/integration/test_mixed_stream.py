"""A mixed stream through a real worker ends in the states an oracle computes.

20 000 events: three years of the synthetic shop sent out of event-time
order (weeks of shuffle, one record in twenty up to a year late), with
re-sent duplicates near and far, cancellations racing their purchases on the
other topic, and 1 % garbage of every failure class (mixed_stream). The group
figures of the sums in Redis equal the oracle's too.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from mixed_stream import (
    Report,
    build_stream,
    check_dead_letters,
    check_insights,
    check_stored,
    check_updates,
    source_letters,
    stored_states,
    stored_sums,
)
from pipeline_harness import Deployment, consume_raw, produce, require_servers, wait_until

from ltv.insights import InsightsConfig

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
        newest = check_updates(report, updates, oracle.states)

        def stored(probe: Report) -> Report:
            check_stored(
                probe, stored_states(dep.redis_url, dep.app_id, dep.partitions), oracle.states
            )
            return probe

        # The last flush follows the last outputs within the flush interval.
        wait_until(lambda: not stored(Report()).problems, 30.0, "Redis states = the oracle's")
        # The group figures are kept in the same writes as the states.
        sums = await stored_sums(dep.redis_url, dep.app_id, dep.partitions)
        await check_insights(report, sums, oracle.states, newest, InsightsConfig())
        assert not report.problems, report.problems[:10]
        assert report.replayed_outputs == 0
    finally:
        await dep.cleanup()
