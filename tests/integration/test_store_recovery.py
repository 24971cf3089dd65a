"""Restart, rebuild, kill -9 and rebalance of the Redis table store, on real Kafka + Redis."""

from __future__ import annotations

import time

import pytest
from store_fixtures import StoreWorld, redis_url, wait_for, world

__all__ = ["redis_url", "world"]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


async def test_restart_with_redis_intact_replays_nothing(world: StoreWorld) -> None:
    first = world.start_worker()
    await world.produce(400, keys=40, duplicates=20)
    await world.wait_oracle()
    first.stop()
    offsets = world.stored_offsets()
    assert all(offset is not None for offset in offsets.values()), offsets

    started = time.monotonic()
    second = world.start_worker()
    await world.produce(40, keys=40)
    await world.wait_oracle()
    restart = time.monotonic() - started
    second.stop()
    assert second.recovered() == 0, "recovery replayed the changelog although Redis was intact"
    assert restart < 30, f"restart to processed events took {restart:.1f}s"


async def test_restart_with_redis_flushed_rebuilds_from_changelog(world: StoreWorld) -> None:
    first = world.start_worker()
    await world.produce(300, keys=30)
    await world.wait_oracle()
    first.stop()
    expected = world.state()

    world.wipe_redis()
    second = world.start_worker()
    await wait_for(lambda: world.state() == expected, 60, "state rebuilt from the changelog")
    assert second.recovered() >= len(expected)
    await world.produce(30, keys=30)
    await world.wait_oracle()
    second.stop()


async def test_kill_9_mid_stream_then_restart_equals_oracle(world: StoreWorld) -> None:
    first = world.start_worker()
    await world.produce(1500, keys=50, duplicates=100)
    total = sum(len(ids) for ids in world.oracle.values())
    await wait_for(
        lambda: sum(n for n, _ in world.state().values()) >= total // 3,
        60,
        "a third of the events to be flushed",
    )
    first.kill()
    second = world.start_worker()
    await world.produce(200, keys=50)
    await world.wait_oracle(timeout=90)
    second.stop()


async def test_two_workers_with_rebalances_lose_and_double_nothing(world: StoreWorld) -> None:
    first = world.start_worker()
    await world.produce(300, keys=40)
    await world.wait_oracle()
    second = world.start_worker()
    await world.produce(300, keys=40)
    await world.wait_oracle()
    first.stop()
    await world.produce(300, keys=40)
    await world.wait_oracle()
    second.stop()
