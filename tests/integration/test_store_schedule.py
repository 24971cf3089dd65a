"""The store's schedule (secondary index) against the real Redis: atomic with
the values, handed out by ``due`` with a retry bump, fenced, wiped and reset."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP
from store_fixtures import require_servers
from test_store_fencing import CHANGELOG, TP0, make_store

from state.store import RedisStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


@pytest.fixture
async def store() -> AsyncIterator[RedisStore]:
    require_servers()
    store = make_store(f"sched-{uuid.uuid4().hex[:8]}", [])
    await store.on_rebalance({TP0}, set(), {TP0})
    yield store
    store.reset_state()


def put(store: RedisStore, key: bytes, value: bytes | None, when: float | None) -> None:
    buffer = store._owned[0].buffer
    buffer.write(key, value)
    buffer.index("schedule", key, when)


def schedule(store: RedisStore) -> dict[bytes, float]:
    entries: list[tuple[bytes, float]] = store._sync.zrange(
        store.layout.index_key(0, "schedule"), 0, -1, withscores=True
    )  # type: ignore[assignment]
    return dict(entries)


async def test_flush_writes_values_and_schedule_together(store: RedisStore) -> None:
    put(store, b"a", b"1", 100.0)
    put(store, b"b", b"2", 50.0)
    store.set_persisted_offset(TP(CHANGELOG, 0), 3)
    store.seal()
    assert schedule(store) == {}
    await store.flush()
    assert schedule(store) == {b"a": 100.0, b"b": 50.0}
    assert store._sync.hgetall(store.layout.data_key(0)) == {b"a": b"1", b"b": b"2"}
    put(store, b"a", None, None)
    store.seal()
    await store.flush()
    assert schedule(store) == {b"b": 50.0}
    assert store._sync.hkeys(store.layout.data_key(0)) == [b"b"]


async def test_due_hands_out_due_keys_once_until_their_retry_time(store: RedisStore) -> None:
    for i in range(5):
        put(store, b"k%d" % i, b"v", float(i * 10))
    store.seal()
    await store.flush()
    assert await store.due(0, until=25.0, limit=2, retry_at=1000.0) == [b"k0", b"k1"]
    assert await store.due(0, until=25.0, limit=10, retry_at=1000.0) == [b"k2"]
    assert await store.due(0, until=25.0, limit=10, retry_at=1000.0) == []
    assert schedule(store)[b"k0"] == 1000.0
    retried = await store.due(0, until=1000.0, limit=10, retry_at=2000.0)
    assert retried == [b"k3", b"k4", b"k0", b"k1", b"k2"]  # lowest score first


async def test_due_skips_keys_rescheduled_since_the_last_flush(store: RedisStore) -> None:
    put(store, b"bought", b"v", 10.0)
    put(store, b"idle", b"v", 10.0)
    store.seal()
    await store.flush()
    store._owned[0].buffer.index("schedule", b"bought", 500.0)  # newer score, not flushed yet
    assert await store.due(0, until=20.0, limit=10, retry_at=300.0) == [b"idle"]


async def test_a_fenced_store_gets_nothing_due_and_wipe_drops_the_schedule(
    store: RedisStore,
) -> None:
    put(store, b"a", b"1", 1.0)
    store.seal()
    await store.flush()
    newer = make_store(store.layout.app_id, [])
    await newer.on_rebalance({TP0}, set(), {TP0})
    assert await store.due(0, until=5.0, limit=10, retry_at=9.0) == []
    assert schedule(store) == {b"a": 1.0}
    newer._clear()
    assert schedule(store) == {}


async def test_keys_recovered_from_the_changelog_are_due_at_once() -> None:
    """The schedule has no changelog: a rebuilt partition files every key as due."""
    require_servers()
    store = make_store(f"sched-{uuid.uuid4().hex[:8]}", [], schedule_recovered=True)
    plain = make_store(f"sched-{uuid.uuid4().hex[:8]}", [])
    try:
        for s in (store, plain):
            await s.on_rebalance({TP0}, set(), {TP0})
            s.apply_changelog_batch(
                [changelog_event(b"a", b"1", 5), changelog_event(b"gone", None, 6)],
                to_key=bytes,
                to_value=bytes,
            )
            await s.flush()
        assert schedule(store) == {b"a": 0.0}
        assert await store.due(0, until=1.0, limit=10, retry_at=99.0) == [b"a"]
        assert schedule(plain) == {}
        assert plain._sync.hgetall(plain.layout.data_key(0)) == {b"a": b"1"}
    finally:
        store.reset_state()
        plain.reset_state()


def changelog_event(key: bytes, value: bytes | None, offset: int) -> Any:
    message = SimpleNamespace(key=key, value=value, offset=offset, partition=0, tp=TP0)
    return SimpleNamespace(message=message)


async def test_reads_outside_stream_iteration_find_a_key_in_any_owned_partition() -> None:
    """A key known to be absent from one partition must not hide it in another
    (GET /customers answered 404 for existing customers once caches filled)."""
    require_servers()
    store = make_store(f"read-{uuid.uuid4().hex[:8]}", [])
    tp1 = TP(CHANGELOG, 1)
    await store.on_rebalance({TP0, tp1}, set(), {TP0, tp1})
    try:
        store._owned[1].buffer.write(b"k", b"v")
        store.seal()
        await store.flush()
        store._cache.put((0, b"k"), None)  # e.g. an earlier read through both partitions
        assert store._get(b"k") == b"v"
        assert store.read(1, b"k") == b"v"
        assert store.read(0, b"k") is None
    finally:
        store.reset_state()
