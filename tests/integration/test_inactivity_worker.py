"""Time-driven churn through a real worker: levels change with no event for the customer.

The worker runs with LTV_CLOCK=event, so its clock is the newest occurred_at
it has seen; the test moves time by publishing purchases of another
customer ("loyal", who keeps buying and so never lapses). One partition
keeps every event in time order, so no customer is ever valued at a clock
far ahead of its own history.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from pipeline_harness import (
    REDIS_URL,
    Deployment,
    consume,
    deployed,
    event,
    produce,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
IDLE_CUSTOMERS = 1000


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    env = {"LTV_CLOCK": "event", "LTV_INACTIVITY_INTERVAL": "0.5"}
    async with deployed(tmp_path, partitions=1, extra_env=env) as dep:
        yield dep


def purchase(dep: Deployment, customer: str, day: int) -> tuple[str, bytes, bytes]:
    body = {
        "event_id": f"e-{customer}-{day}",
        "order_id": f"o-{customer}-{day}",
        "customer_id": customer,
        "occurred_at": (T0 + day * DAY).isoformat(),
        "amount": "30.00",
        "currency": "USD",
    }
    return event(dep.purchases, body)


def mine(records: list[dict[str, Any]], customer: str) -> list[dict[str, Any]]:
    return [r for r in records if r["customer_id"] == customer]


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


async def test_silent_customer_goes_low_medium_high_and_ticks_touch_only_due_ones(
    deployment: Deployment,
) -> None:
    worker = deployment.start_worker()
    history = [(day, c) for day in range(0, 121, 30) for c in ("idle", "loyal")]
    await produce([purchase(deployment, c, day) for day, c in history])
    # 1000 one-time buyers on day 120: first due on day 255 (1.5 x the 90-day population gap).
    await produce([purchase(deployment, f"far-{i}", 120) for i in range(IDLE_CUSTOMERS)])
    schedule = f"{{ltv:{deployment.app_id}:customers:0}}:schedule".encode()
    client = redis.Redis.from_url(REDIS_URL)
    wait_until(
        lambda: client.zcard(schedule) == IDLE_CUSTOMERS + 2,
        60,
        lambda: f"schedule has {client.zcard(schedule)} entries:\n{worker.tail()}",
    )

    async def churn_of_idle(expected: int) -> list[dict[str, Any]]:
        records = mine(await consume(deployment.churn, IDLE_CUSTOMERS + 2, timeout=30), "idle")
        deadline = asyncio.get_running_loop().time() + 60
        while len(records) < expected and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.5)
            records = mine(await consume(deployment.churn, IDLE_CUSTOMERS + 2, 5), "idle")
        return records

    await produce([purchase(deployment, "loyal", 170)])  # idle: 50 days silent = 1.67 gaps
    assert len(await churn_of_idle(2)) == 2
    await produce([purchase(deployment, "loyal", 220)])  # idle: 100 days = 3.33 gaps
    assert len(await churn_of_idle(3)) == 3

    updates = await consume(deployment.updates, 7 + 7 + IDLE_CUSTOMERS + 2, settle=3)
    churn = await consume(deployment.churn, IDLE_CUSTOMERS + 2 + 2, settle=1)
    idle_churn = mine(churn, "idle")
    assert [(r["previous"], r["current"], r["cause"], r["version"]) for r in idle_churn] == [
        (None, "low", "purchase", 1),
        ("low", "medium", "inactivity", 6),
        ("medium", "high", "inactivity", 7),
    ]
    idle_updates = mine(updates, "idle")
    assert [u["version"] for u in idle_updates] == list(range(1, 8))
    assert [u["cause"]["type"] for u in idle_updates] == ["purchase"] * 5 + ["inactivity"] * 2
    assert [u["churn_risk"] for u in idle_updates[5:]] == ["medium", "high"]
    assert [u["as_of"][:10] for u in idle_updates[5:]] == ["2025-06-20", "2025-08-09"]
    # The customer who keeps buying never gets an inactivity transition.
    loyal_churn = mine(churn, "loyal")
    assert [(r["previous"], r["current"]) for r in loyal_churn] == [(None, "low")]
    assert all(u["cause"]["type"] == "purchase" for u in mine(updates, "loyal"))
    # 1002 scheduled customers, many ticks, yet only the 2 due ones were handed out.
    status, body = worker.get("/metrics")
    assert status == 200
    text = body.decode()
    assert metric(text, "ltv_inactivity_tick_seconds_count") > 10
    assert metric(text, "ltv_inactivity_checks_total") == 2
    assert client.zcard(schedule) == IDLE_CUSTOMERS + 1  # idle is high: nothing left to change
