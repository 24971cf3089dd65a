"""The same store checks on a 3-master Redis Cluster started by the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from store_fixtures import StoreWorld, free_ports, require_servers, spawn_redis_cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from spawn_redis_cluster(tmp_path_factory.mktemp("cluster"), free_ports(3))


@pytest.fixture
async def cluster_world(tmp_path: Path, cluster_url: str) -> AsyncIterator[StoreWorld]:
    require_servers(cluster_url)
    world = StoreWorld(tmp_path, cluster_url)
    await world.create_topics()
    try:
        yield world
    finally:
        await world.close()


async def test_cluster_restart_intact_and_kill_9(cluster_world: StoreWorld) -> None:
    world = cluster_world
    first = world.start_worker()
    await world.produce(600, keys=40, duplicates=30)
    await world.wait_oracle()
    first.kill()
    second = world.start_worker()
    await world.produce(100, keys=40)
    await world.wait_oracle()
    second.stop()
    third = world.start_worker()
    await world.produce(40, keys=40)
    await world.wait_oracle()
    third.stop()
    assert third.recovered() == 0, "recovery replayed the changelog although Redis was intact"
