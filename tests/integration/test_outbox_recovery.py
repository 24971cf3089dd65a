"""A worker killed after its changelog record was acknowledged but before its outputs
were: the restarted worker resends the owed outputs from the changelog (the outbox of
state.envelope) and drops the redelivered input as a replay.

The crash is reproduced exactly rather than hoped for: while no worker runs, the test
writes what the dead worker would have left behind -- the input record (not committed)
and the changelog record of its new value, whose outputs never reached ltv.updates --
with Redis still at the previous flush. test_reliability.py kills real workers at
random moments; this case pins down the window it can only hit by chance.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from mixed_stream import stored_states
from pipeline_harness import Deployment, consume, deployed, event, produce, wait_until

from ltv.valuation import ValuationConfig
from state import envelope
from state.customer import StateConfig
from state.fx import load_fx_table
from state.store.config import StoreConfig
from state.store.keys import KeyLayout
from streams.processing import Processor, Record

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    async with deployed(tmp_path, partitions=1) as dep:
        yield dep


def purchase(n: int) -> dict[str, str]:
    return {
        "event_id": f"e-{n}",
        "order_id": f"o-{n}",
        "customer_id": "c-1",
        "occurred_at": f"2026-10-0{n}T10:00:00+00:00",
        "amount": "50.00",
        "currency": "USD",
    }


def redis_value(dep: Deployment) -> bytes | None:
    client = StoreConfig.from_url(dep.redis_url).sync_client()
    try:
        value = client.hget(KeyLayout(dep.app_id, "customers").data_key(0), b"c-1")
    finally:
        client.close()
    assert value is None or isinstance(value, bytes)
    return value


def flushed_version(dep: Deployment) -> int:
    """The version of c-1's state in Redis (0: none yet)."""
    value = redis_value(dep)
    return 0 if value is None else envelope.customer_state(value).version


async def send(topic: str, key: bytes, value: bytes, bootstrap: str) -> int:
    """Produce one record; return its offset."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, value, key=key, partition=0)
    finally:
        await producer.stop()
    return int(meta.offset)


async def test_owed_outputs_are_resent_and_the_redelivered_input_dropped(
    deployment: Deployment,
) -> None:
    dep = deployment
    worker = dep.start_worker()
    await produce([event(dep.purchases, purchase(1))], bootstrap=dep.bootstrap)
    (first,) = await consume(dep.updates, 1)
    assert first["version"] == 1
    wait_until(lambda: flushed_version(dep) == 1, 30.0, "purchase 1 never flushed to Redis")
    worker.stop()  # graceful: Redis flushed, input offset committed
    before = redis_value(dep)
    assert before is not None

    # What a worker killed mid-batch leaves behind for purchase 2.
    body = orjson.dumps(purchase(2))
    offset = await send(dep.purchases, b"c-1", body, dep.bootstrap)
    now = datetime.now(UTC)
    cfg = StateConfig(fx=load_fx_table(None, "USD"))
    processor = Processor(cfg, ValuationConfig(), base_currency="USD", max_bytes=65536)
    owed = processor.handle("purchase", Record(dep.purchases, 0, offset, b"c-1", body), before, now)
    assert owed.state is not None and [o.kind for o in owed.outputs][:1] == ["update"]
    changelog = f"{dep.app_id}-customers-changelog"
    await send(changelog, b"c-1", owed.state, dep.bootstrap)

    dep.start_worker()
    owed_update = owed.outputs[0].value
    updates = await consume(dep.updates, 2, settle=3.0)
    assert [u["version"] for u in updates] == [1, 2]
    assert orjson.dumps(updates[1]) == orjson.dumps(orjson.loads(owed_update))
    assert updates[1]["cause"] == {"type": "purchase", "event_id": "e-2"}
    assert await consume(dep.dead_letter, 0, settle=1.0) == []

    # Redis keeps the value without its outbox once the recovered record is flushed.
    stripped = envelope.without_outbox(owed.state)
    wait_until(lambda: redis_value(dep) == stripped, 30.0, "recovered value not flushed")
    assert stored_states(dep.redis_url, dep.app_id, 1)["c-1"].orders == 2
