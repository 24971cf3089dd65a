"""The live group figures of a real worker equal the oracle's, on the demo shop.

The demo feed (purchases, refunds, NPS answers, channels with a CAC each) runs
through a worker; the oracle applies the same events with the pure
transitions and computes every figure from the final states and each
customer's newest update (insights_oracle). ``GET /insights`` and ``ltv
insights --json`` must give exactly the figures of the sums in Redis, and
those must equal the oracle's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from mixed_stream import Report, check_insights, check_stored, stored_states, stored_sums
from pipeline_harness import consume_raw, deployed, produce, wait_until

from ltv.insights import InsightsConfig, insights
from state.customer import CustomerState, StateConfig, apply_event, new_state
from state.events import decode_event
from state.fx import load_fx_table
from streams.demo import DemoFeed, cac_setting, default_cac

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TOKEN = "insights-t0ken"


def oracle_states(feed: list[Any]) -> dict[str, CustomerState]:
    fx = load_fx_table(None, "USD")
    cfg = StateConfig(fx=fx)
    states: dict[str, CustomerState] = {}
    for e in feed:
        event = decode_event(e.kind, orjson.dumps(e.value), fx=fx)
        state = states.get(event.customer_id) or new_state(event.customer_id)
        states[event.customer_id] = apply_event(state, event, cfg).state
    return states


def newest_updates(raw: list[bytes]) -> dict[str, dict[str, Any]]:
    newest: dict[str, dict[str, Any]] = {}
    for value in raw:
        update = orjson.loads(value)
        seen = newest.get(update["customer_id"])
        if seen is None or update["version"] > seen["version"]:
            newest[update["customer_id"]] = update
    return newest


async def test_demo_shop_insights_equal_the_oracle_everywhere_they_are_served(
    tmp_path: Path,
) -> None:
    env = {
        "LTV_CAC": cac_setting(),
        "LTV_API_TOKEN": TOKEN,
        # No inactivity tick may revalue a customer between reading and comparing.
        "LTV_INACTIVITY_INTERVAL": "86400",
    }
    async with deployed(tmp_path, extra_env=env) as dep:
        now = datetime.now(UTC)
        # The shop's first 400 days; its customers' lives go on after the clock.
        shop = DemoFeed(customers=400, seed=16, start=now - timedelta(days=400), span_days=380)
        feed = [e for e in shop if e.occurred_at <= now]
        topic = {"purchase": dep.purchases, "cancellation": dep.cancellations}
        records = [
            (topic.get(e.kind, dep.feedback), e.key.encode(), orjson.dumps(e.value)) for e in feed
        ]
        assert {e.kind for e in feed} == {"purchase", "cancellation", "feedback"}
        worker = dep.start_worker()
        await produce(records)
        states = oracle_states(feed)
        applied = sum(s.version for s in states.values())
        raw = await consume_raw(dep.updates, applied, timeout=180, settle=1.0)
        newest = newest_updates(raw)
        assert sum(u["version"] for u in newest.values()) == applied, worker.tail()

        def stored_ok() -> bool:
            probe = Report()
            check_stored(probe, stored_states(dep.redis_url, dep.app_id, dep.partitions), states)
            return not probe.problems

        wait_until(stored_ok, 30.0, "Redis states = the oracle's")
        assert worker.get("/insights")[0] == 401
        status, body = worker.get("/insights", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200, body
        doc = orjson.loads(body)
        as_of = datetime.fromisoformat(doc["as_of"])
        cfg = InsightsConfig(cac=default_cac())
        sums = await stored_sums(dep.redis_url, dep.app_id, dep.partitions)
        assert body == insights(sums, as_of, cfg).to_json()
        report = Report()
        await check_insights(report, sums, states, newest, cfg)
        assert not report.problems, report.problems

        # What the demo shop is built to show (streams.demo).
        breadth = {g["member"]: g for g in doc["breadth"]}
        nps = {g["member"]: g for g in doc["nps"]}
        assert breadth["3+"]["ratio"] > 1.5 and nps["promoter"]["ratio"] > 1.5
        assert doc["promoter_detractor_ratio"] == nps["promoter"]["ratio"]
        channels = {c["channel"] for c in doc["channels"] if c["ltv_cac"] is not None}
        assert channels == set(default_cac()), doc["channels"]

        cli = dep.ltv(worker, "insights", "--json", "--as-of", doc["as_of"])
        assert cli.returncode == 0, cli.stderr
        assert orjson.loads(cli.stdout) == doc
        table = dep.ltv(worker, "insights", "--as-of", doc["as_of"])
        assert table.returncode == 0, table.stderr
        for figure in (doc["channels"][0]["channel"], str(doc["customers"])):
            assert figure in table.stdout, table.stdout
