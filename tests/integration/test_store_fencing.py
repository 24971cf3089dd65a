"""Fencing, stale offsets (#158) and reset isolation against the real Redis.

These drive RedisStore directly with a stand-in app (no Kafka needed for the
behaviour under test): two stores of one app id play the old and the new
owner of a partition.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP
from mode.signals import Signal
from prometheus_client import CollectorRegistry
from store_fixtures import REDIS_URL, require_servers

from state.store import RedisStore
from state.store.metrics import StoreMetrics
from streams.metrics import sample_value

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

CHANGELOG = "app-counters-changelog"
TP0 = TP(CHANGELOG, 0)


class FakeProducer:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def flush(self) -> None:
        self.log.append("producer.flush")


def make_store(
    app_id: str,
    log: list[str],
    ends: Mapping[TP, int] | None = None,
    **options: Any,
) -> RedisStore:
    async def highwaters(*tps: TP) -> Mapping[TP, int]:
        return {tp: (ends or {}).get(tp, 10**9) for tp in tps}

    app: Any = SimpleNamespace(
        conf=SimpleNamespace(id=app_id, producer_threaded=False),
        on_partitions_revoked=Signal(),
        assignor=SimpleNamespace(assigned_standbys=lambda: set()),
        consumer=SimpleNamespace(highwaters=highwaters),
        producer=FakeProducer(log),
    )
    table: Any = SimpleNamespace(
        name="counters", changelog_topic=SimpleNamespace(topics={CHANGELOG}), is_global=False
    )
    return RedisStore(
        f"{REDIS_URL}?flush_interval=60",
        app,
        table,
        options={"metrics": StoreMetrics(CollectorRegistry()), **options},
    )


def write(store: RedisStore, partition: int, key: bytes, value: bytes, offset: int) -> None:
    store._owned[partition].buffer.write(key, value)
    store.set_persisted_offset(TP(CHANGELOG, partition), offset)


@pytest.fixture
async def app_id() -> AsyncIterator[str]:
    require_servers()
    app_id = f"fence-{uuid.uuid4().hex[:8]}"
    yield app_id
    client = make_store(app_id, [])._sync
    for key in client.scan_iter(match=f"{{ltv:{app_id}:*"):
        client.delete(key)


async def test_zombie_flush_is_refused_and_partition_forgotten(app_id: str) -> None:
    log: list[str] = []
    old, new = make_store(app_id, log), make_store(app_id, log)
    await old.on_rebalance({TP0}, set(), {TP0})
    write(old, 0, b"k", b"from-old", 1)
    old.seal()
    await old.flush()
    await new.on_rebalance({TP0}, set(), {TP0})
    assert new.persisted_offset(TP0) == 1
    write(old, 0, b"k", b"zombie", 2)
    old.seal()
    await old.flush()
    assert 0 not in old._owned, "the fenced store must forget the partition"
    assert sample_value(old.metrics.fenced_flushes) == 1
    write(new, 0, b"k", b"from-new", 2)
    new.seal()
    await new.flush()
    assert new._sync.hget(new.layout.data_key(0), b"k") == b"from-new"
    assert log == [], "sealed writes were acknowledged by the caller: no producer flush"


async def test_an_explicitly_sealing_store_flushes_nothing_before_its_first_seal(
    app_id: str,
) -> None:
    # A batch's writes whose records are still on their way must not reach
    # Redis through a flush that runs before the app's first seal.
    log: list[str] = []
    store = make_store(app_id, log, explicit_seal=True)
    await store.on_rebalance({TP0}, set(), {TP0})
    write(store, 0, b"k", b"open", 1)
    await store.flush()
    assert store._sync.hget(store.layout.data_key(0), b"k") is None and log == []
    store.seal()
    await store.flush()
    assert store._sync.hget(store.layout.data_key(0), b"k") == b"open"


async def test_a_store_never_sealed_flushes_the_producer_before_each_write(app_id: str) -> None:
    log: list[str] = []
    store = make_store(app_id, log)
    await store.on_rebalance({TP0}, set(), {TP0})
    write(store, 0, b"k", b"v", 1)
    await store.flush()
    write(store, 0, b"k", b"w", 2)
    await store.flush()
    assert log == ["producer.flush", "producer.flush"]
    assert store._sync.hget(store.layout.data_key(0), b"k") == b"w"


async def test_stale_offset_above_changelog_end_wipes_partition(app_id: str) -> None:
    first = make_store(app_id, [])
    await first.on_rebalance({TP0}, set(), {TP0})
    write(first, 0, b"k", b"v", 500)
    first.seal()
    await first.flush()
    restarted = make_store(app_id, [], ends={TP0: 10})
    await restarted.on_rebalance({TP0}, set(), {TP0})
    assert restarted.persisted_offset(TP0) is None
    assert restarted._sync.hlen(restarted.layout.data_key(0)) == 0


async def test_prefetch_loads_misses_in_one_round_trip_and_reads_stay_local(app_id: str) -> None:
    store = make_store(app_id, [])
    await store.on_rebalance({TP0}, set(), {TP0})
    store._sync.hset(store.layout.data_key(0), mapping={b"a": b"1", b"b": b"2"})
    await store.prefetch({0: [b"a", b"b", b"missing"]})
    assert [store._get(k) for k in (b"a", b"b", b"missing")] == [b"1", b"2", None]
    assert sample_value(store.metrics.sync_reads) == 0


async def test_a_flush_landing_during_a_prefetch_leaves_no_blocking_read(app_id: str) -> None:
    """A flush that lands while a prefetch's reads are in flight bumps the
    partition's generation, so the values read may be stale; they are read
    again, not left to a blocking read in the batch (which fails the batch
    when Redis has gone away in between)."""
    store = make_store(app_id, [])
    await store.on_rebalance({TP0}, set(), {TP0})
    await store.prefetch({0: [b"warm"]})  # the pool has its connection
    keys = [f"k{i}".encode() for i in range(50)]
    store._sync.hset(store.layout.data_key(0), mapping=dict.fromkeys(keys, b"stored"))
    prefetch = asyncio.create_task(store.prefetch({0: keys}))
    await asyncio.sleep(0)  # the reads are sent; their reply is not handled yet
    store._drop_cache(0)  # what a flush landing now does to the partition
    await prefetch
    assert [store.read(0, k) for k in keys] == [b"stored"] * len(keys)
    assert sample_value(store.metrics.sync_reads) == 0


async def test_source_progress_lands_with_its_values_and_comes_back_at_the_claim(
    app_id: str,
) -> None:
    first = make_store(app_id, [])
    await first.on_rebalance({TP0}, set(), {TP0})
    write(first, 0, b"a", b"1", 3)
    first.advance(0, "orders.purchases", 41)
    first.seal()
    first.advance(0, "orders.purchases", 99)  # a batch not sealed yet
    await first.flush()
    second = make_store(app_id, [])
    await second.on_rebalance({TP0}, set(), {TP0})
    assert second.resume_offsets(0) == {"orders.purchases": 41}
    assert second.read(0, b"a") == b"1"
    first.seal()
    await first.flush()  # the old owner's later progress is fenced off
    meta = second._sync.hgetall(second.layout.meta_key(0))
    assert meta[b"source:orders.purchases"] == b"41" and meta[b"offset"] == b"3"
    assert first.resume_offsets(0) == {}


async def test_reset_state_never_touches_another_apps_keys(app_id: str) -> None:
    mine, other = make_store(app_id, []), make_store(f"{app_id}x", [])
    for store in (mine, other):
        await store.on_rebalance({TP0}, set(), {TP0})
        write(store, 0, b"k", b"v", 1)
        store.seal()
        await store.flush()
    mine.reset_state()
    assert mine._sync.exists(mine.layout.data_key(0)) == 0
    assert other._sync.hget(other.layout.data_key(0), b"k") == b"v"
    other.reset_state()


async def test_backpressure_blocks_prefetch_until_a_flush_drains_the_buffer(app_id: str) -> None:
    store = make_store(app_id, [])
    await store.on_rebalance({TP0}, set(), {TP0})
    store.config = type(store.config)(**{**store.config.__dict__, "max_dirty": 1})
    write(store, 0, b"a", b"1", 1)
    write(store, 0, b"b", b"2", 2)
    store._update_dirty()
    assert not store.healthy
    blocked = asyncio.ensure_future(store.prefetch({0: [b"c"]}))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    await store.flush()
    await asyncio.wait_for(blocked, 5)
    assert store.healthy
