"""Event in -> state -> update out, through a real worker on real Kafka and Redis."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from pipeline_harness import Deployment, consume, deployed, event, produce
from schema_check import assert_valid

from state.fx import load_fx_table

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    async with deployed(tmp_path) as dep:
        yield dep


def purchase(
    n: int, customer: str, amount: str, currency: str = "USD", day: int = 1
) -> dict[str, Any]:
    return {
        "event_id": f"e-{customer}-{n}",
        "order_id": f"o-{customer}-{n}",
        "customer_id": customer,
        "occurred_at": f"2026-10-{day:02d}T10:00:00+01:00",
        "amount": amount,
        "currency": currency,
        "channel": "paid_search",
    }


def by_customer(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        out.setdefault(record["customer_id"], []).append(record)
    return out


async def test_purchases_and_a_cancellation_produce_versioned_updates(
    deployment: Deployment,
) -> None:
    worker = deployment.start_worker()
    fx = load_fx_table(None, "USD")
    eur = fx.convert(Decimal("80.00"), "EUR")
    records = [
        event(deployment.purchases, purchase(1, "c-1", "100.00", day=1)),
        event(deployment.purchases, purchase(2, "c-1", "80.00", "EUR", day=5)),
        event(deployment.purchases, purchase(1, "c-2", "40.00", day=2)),
        event(
            deployment.cancellations,
            {
                "event_id": "e-c-1-refund",
                "order_id": "o-c-1-1",
                "customer_id": "c-1",
                "occurred_at": "2026-10-06T09:00:00Z",
                "amount": "30.00",
            },
        ),
    ]
    # Cancellations are a separate topic: send the refund only after its purchase is out,
    # so the expected version order is fixed.
    await produce(records[:3])
    first = await consume(deployment.updates, 3)
    await produce(records[3:])
    updates = await consume(deployment.updates, 4, settle=1.0)
    assert len(first) == 3
    assert len(updates) == 4, worker.tail()

    per_customer = by_customer(updates)
    c1 = per_customer["c-1"]
    assert [u["version"] for u in c1] == [1, 2, 3]
    assert [u["orders"] for u in c1] == [1, 2, 2]
    expected_net = [
        Decimal("100.00"),
        Decimal("100.00") + eur,
        Decimal("70.00") + eur,
    ]
    assert [Decimal(u["net_revenue"]) for u in c1] == [
        n.quantize(Decimal("0.01")) for n in expected_net
    ]
    assert [u["cause"]["type"] for u in c1] == ["purchase", "purchase", "cancellation"]
    assert c1[-1]["cause"]["event_id"] == "e-c-1-refund"
    assert all(u["currency"] == "USD" for u in updates)
    c2 = per_customer["c-2"]
    assert [(u["version"], u["orders"], u["net_revenue"]) for u in c2] == [(1, 1, "40.00")]


async def test_duplicates_change_nothing_and_garbage_is_dead_lettered(
    deployment: Deployment,
) -> None:
    worker = deployment.start_worker()
    good = purchase(1, "c-9", "10.00")
    await produce(
        [
            event(deployment.purchases, good),
            event(deployment.purchases, good),  # same event id: counted once
            (deployment.purchases, b"c-9", b"{not json"),
            event(deployment.purchases, {**purchase(2, "c-9", "1.00"), "amount": "-1"}),
            event(deployment.purchases, {**purchase(3, "c-9", "1.00"), "currency": "XXX"}),
            event(deployment.purchases, purchase(4, "c-9", "5.00"), key="someone-else"),
            event(deployment.purchases, purchase(5, "c-9", "5.00")),
        ]
    )
    dead = await consume(deployment.dead_letter, 4, settle=0.5)
    assert sorted(d["error"]["code"] for d in dead) == sorted(
        ["invalid_json", "schema", "unknown_currency", "key_mismatch"]
    )
    garbage = next(d for d in dead if d["error"]["code"] == "invalid_json")
    assert (garbage["value"], garbage["value_encoding"]) == ("{not json", "utf8")
    assert garbage["source_topic"] == deployment.purchases and garbage["offset"] >= 0
    updates = await consume(deployment.updates, 2, settle=1.0)
    assert [(u["version"], u["orders"], u["net_revenue"]) for u in updates] == [
        (1, 1, "10.00"),
        (2, 2, "15.00"),
    ], worker.tail()
    status, body = worker.get("/metrics")
    assert status == 200
    assert b'ltv_dead_letter_total{reason="invalid_json"} 1.0' in body
    assert b'ltv_events_processed_total{event_type="purchase",outcome="duplicate"} 1.0' in body


def answer(event_id: str, customer: str, score: int, day: int) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": f"2026-10-{day:02d}T12:00:00Z",
        "score": score,
    }


async def test_nps_answers_are_updates_and_the_latest_one_classes_the_customer(
    deployment: Deployment,
) -> None:
    """docs/input-events.md#customersfeedback: an older answer still takes a
    version but keeps the class; a redelivery publishes nothing."""
    worker = deployment.start_worker()
    await produce([event(deployment.purchases, purchase(1, "c-5", "20.00"))])
    assert [u["nps_class"] for u in await consume(deployment.updates, 1)] == ["unknown"]
    newer, older = answer("f-2", "c-5", 10, day=9), answer("f-1", "c-5", 3, day=2)
    await produce(
        [
            event(deployment.feedback, newer),
            event(deployment.feedback, older),
            event(deployment.feedback, newer),  # redelivered: nothing
            event(deployment.feedback, answer("f-3", "c-5", 0, day=9), key="someone-else"),
        ]
    )
    (dead,) = await consume(deployment.dead_letter, 1, settle=0.5)
    assert (dead["error"]["code"], dead["source_topic"]) == ("key_mismatch", deployment.feedback)
    updates = await consume(deployment.updates, 3, settle=1.0)
    assert [
        (u["version"], u["cause"]["type"], u["cause"]["event_id"], u["nps_class"], u["orders"])
        for u in updates
    ] == [
        (1, "purchase", "e-c-5-1", "unknown", 1),
        (2, "feedback", "f-2", "promoter", 1),
        (3, "feedback", "f-1", "promoter", 1),
    ], worker.tail()


async def test_customer_endpoint_answers_from_the_owner_with_the_token(tmp_path: Path) -> None:
    async with deployed(tmp_path, extra_env={"LTV_API_TOKEN": "t0ken-for-tests"}) as dep:
        worker = dep.start_worker()
        await produce(
            [
                event(dep.purchases, purchase(1, "c-7", "12.50")),
                event(dep.purchases, purchase(2, "c-7", "7.50", day=3)),
            ]
        )
        published = await consume(dep.updates, 2)
        auth = {"Authorization": "Bearer t0ken-for-tests"}
        status, body = worker.get("/customers/c-7", auth)
        assert status == 200, body
        assert_valid("update", body)
        answer = orjson.loads(body)
        latest = published[-1]
        assert answer["cause"] == {"type": "query", "event_id": None}
        for field in (
            "customer_id",
            "version",
            "orders",
            "net_revenue",
            "historic_ltv",
            "currency",
        ):
            assert answer[field] == latest[field], field
        assert (answer["version"], answer["orders"], answer["net_revenue"]) == (2, 2, "20.00")
        assert worker.get("/customers/nobody", auth)[0] == 404
        assert worker.get("/customers/c-7")[0] == 401
        assert worker.get("/customers/c-7", {"Authorization": "Bearer wrong"})[0] == 401
        assert b"t0ken-for-tests" not in worker.log_path.read_bytes()
        cli = subprocess.run(
            [sys.executable, "-m", "streams.cli", "customer", "c-7"],
            env=dep.env(worker.web_port),
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert cli.returncode == 0, cli.stderr
        assert orjson.loads(cli.stdout)["orders"] == 2


def _days_ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


async def test_churn_risk_records_follow_the_heuristic_levels(deployment: Deployment) -> None:
    """Before any fit, levels come from days since the last order over the mean gap."""
    deployment.start_worker()

    def bought(customer: str, n: int, days_ago: int) -> tuple[str, bytes, bytes]:
        return event(
            deployment.purchases,
            {**purchase(n, customer, "10.00"), "occurred_at": _days_ago(days_ago)},
        )

    # Sent one by one so each customer's levels are computed in this order.
    await produce([bought("fresh", 1, 5)])  # 5 of 90 population days: low
    await produce([bought("lapsing", 1, 100)])  # 100 of 90 days: still under 1.5 gaps, low
    await produce([bought("lapsing", 2, 90)])  # own gap 10 days, 90 days since: high
    churn = await consume(deployment.churn, 3, settle=1.0)
    seen = [
        (c["customer_id"], c["previous"], c["current"], c["cause"], c["version"]) for c in churn
    ]
    assert sorted(seen, key=lambda c: (c[0], c[4])) == [
        ("fresh", None, "low", "purchase", 1),
        ("lapsing", None, "low", "purchase", 1),
        ("lapsing", "low", "high", "purchase", 2),
    ]
    high = next(c for c in churn if c["current"] == "high")
    assert high["days_since_last_order"] == 90
    updates = await consume(deployment.updates, 3, settle=0.5)
    levels = {(u["customer_id"], u["version"]): u["churn_risk"] for u in updates}
    assert levels == {("fresh", 1): "low", ("lapsing", 1): "low", ("lapsing", 2): "high"}


def _docs_example(name: str) -> Any:
    """A script of docs/examples, imported as users would run it."""
    path = Path(__file__).resolve().parents[2] / "docs" / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_compacted_customers_topic_bootstraps_every_customers_latest_update(
    deployment: Deployment,
) -> None:
    deployment.start_worker()
    records = [
        event(deployment.purchases, purchase(1, "c-1", "100.00", day=1)),
        event(deployment.purchases, purchase(2, "c-1", "60.00", day=3)),
        event(deployment.purchases, purchase(1, "c-2", "40.00", day=2)),
    ]
    await produce(records)
    updates = await consume(deployment.updates, 3, settle=1.0)
    newest = {}
    for update in updates:
        if update["version"] > newest.get(update["customer_id"], {"version": 0})["version"]:
            newest[update["customer_id"]] = update
    example = _docs_example("current_ltv")
    assert await example.current_ltv(deployment.bootstrap, deployment.latest) == newest

    admin = AIOKafkaAdminClient(bootstrap_servers=deployment.bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, deployment.latest)]
        )
        ((_, _, _, _, entries),) = response.resources
        assert {entry[0]: entry[1] for entry in entries}["cleanup.policy"] == "compact"
    finally:
        await admin.close()
