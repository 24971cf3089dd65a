"""With LTV_CLOCK=event, a backfill leaves the states that live processing would.

"Live" is the pure processor fed the same events in time order with the wall
clock at each event's own time, as if they had happened now; the backfill
is ``ltv backfill FILE.jsonl`` through Kafka into a real worker valuing on
its event-time watermark. Every state field is compared except the stored
churn-risk level, which is a valuation as of each worker's clock (the
watermark runs a little ahead of an event's own time across partitions).
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from mixed_stream import stored_states
from pipeline_harness import deployed, wait_until

from state.customer import CustomerState
from state.envelope import customer_state
from streams.demo import DemoFeed
from streams.processing import Record
from streams.settings import Settings
from streams.wiring import build_processor

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

EVENTS = 3000
#: Not compared: the level is a valuation as of the processing clock.
CLOCK_DEPENDENT = {"risk"}


def _live(lines: list[bytes]) -> dict[str, CustomerState]:
    processor = build_processor(Settings())
    states: dict[bytes, bytes] = {}
    for offset, line in enumerate(lines):
        body = orjson.loads(line)
        kind = "cancellation" if "scope" in body else "purchase"
        key = body["customer_id"].encode()
        at = datetime.fromisoformat(body["occurred_at"])
        result = processor.handle(kind, Record("live", 0, offset, key, line), states.get(key), at)
        if result.state is not None:
            states[key] = result.state
    return {k.decode(): customer_state(v) for k, v in states.items()}


async def test_backfill_with_event_clock_equals_live(tmp_path: Path) -> None:
    feed = DemoFeed(
        800, seed=11, start=datetime(2025, 3, 1, tzinfo=UTC), span_days=120, feedback=False
    )
    lines = [orjson.dumps(e.value) for _, e in zip(range(EVENTS), feed, strict=False)]
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    live = _live(lines)

    env = {"LTV_CLOCK": "event", "LTV_INACTIVITY_INTERVAL": "86400"}
    async with deployed(tmp_path, extra_env=env) as dep:
        worker = dep.start_worker()
        dep.run_ltv(worker, "backfill", str(path))

        def caught_up() -> bool:
            stored = stored_states(dep.redis_url, dep.app_id, dep.partitions)
            return {c: s.version for c, s in stored.items()} == {
                c: s.version for c, s in live.items()
            }

        wait_until(caught_up, 120, lambda: f"backfill never caught up:\n{worker.tail()}")
        backfilled = stored_states(dep.redis_url, dep.app_id, dep.partitions)

    compared = [
        f.name for f in fields(CustomerState) if f.compare and f.name not in CLOCK_DEPENDENT
    ]
    differences = [
        (customer, name)
        for customer, state in live.items()
        for name in compared
        if getattr(state, name) != getattr(backfilled[customer], name)
    ]
    assert len(live) > 300
    assert not differences, differences[:10]
