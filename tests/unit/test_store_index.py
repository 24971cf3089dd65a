"""The store's secondary indexes (schedule, notices) in the write-back buffer and its
WRITE arguments."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from state.store.buffer import PartitionBuffer, Snapshot
from state.store.redis_store import RedisStore


def test_index_writes_follow_their_values_through_the_generations() -> None:
    buffer = PartitionBuffer()
    buffer.write(b"k", b"v1")
    buffer.index("schedule", b"k", 100.0)
    assert not buffer.pending()
    buffer.seal(acked_offset=1)
    snapshot = buffer.take()
    assert snapshot.items == {b"k": b"v1"} and snapshot.index == {("schedule", b"k"): 100.0}
    buffer.index("schedule", b"k", None)
    assert buffer.indexed("schedule", b"k") == (True, None)
    buffer.settle(snapshot)
    assert buffer.indexed("schedule", b"k") == (True, None)
    assert buffer.indexed("schedule", b"other") == (False, None)


def test_abort_keeps_newer_sealed_index_writes_on_top() -> None:
    buffer = PartitionBuffer()
    buffer.index("schedule", b"a", 1.0)
    buffer.index("schedule", b"b", 2.0)
    buffer.seal(acked_offset=None)
    buffer.take()
    buffer.index("schedule", b"a", 5.0)
    buffer.seal(acked_offset=None)
    buffer.abort()
    assert buffer.sealed_index == {("schedule", b"a"): 5.0, ("schedule", b"b"): 2.0}
    assert not buffer.inflight_index


def test_index_only_writes_are_pending_and_counted_as_dirty() -> None:
    buffer = PartitionBuffer()
    buffer.index("schedule", b"a", 1.0)
    assert len(buffer) == 1
    buffer.seal(acked_offset=None)
    assert buffer.pending()
    covered = buffer.take().covering(4)
    assert covered.index == {("schedule", b"a"): 1.0} and covered.offset == 4


def test_the_indexes_of_one_key_are_separate() -> None:
    buffer = PartitionBuffer()
    buffer.index("schedule", b"k", 1.0)
    buffer.index("notices", b"k", 7.0)
    assert buffer.indexed("schedule", b"k") == (True, 1.0)
    assert buffer.indexed("notices", b"k") == (True, 7.0)
    buffer.index("notices", b"k", None)
    assert buffer.indexed("schedule", b"k") == (True, 1.0)


def chunks(
    snapshot: Snapshot, size: int, contributions: dict[bytes, bytes | None] | None = None
) -> list[list[Any]]:
    store: Any = RedisStore.__new__(RedisStore)
    store.config = SimpleNamespace(chunk_keys=size)
    return list(store._write_chunks(7, snapshot, snapshot.items, contributions))


def test_write_arguments_keep_a_keys_value_and_schedule_in_one_chunk() -> None:
    snapshot = Snapshot(
        items={b"a": b"1", b"b": None, b"c": b"3"},
        offset=42,
        index={
            ("schedule", b"c"): 9.5,
            ("schedule", b"a"): None,
            ("schedule", b"d"): 2.0,
            ("notices", b"a"): 3.0,
        },
        sources={"orders.purchases": 120},
    )
    first, second = chunks(snapshot, size=2)
    # a (value, removal from the schedule, a notices score), b (delete); no offsets yet
    counts = ["1", "1", "0", "0", "1", "1", "0", "0"]
    assert first == ["7", "", *counts, b"a", b"1", b"b", b"a", "3.0", b"a"]
    # c (value + score), d (score only); the last chunk carries the offsets
    counts = ["1", "0", "0", "2", "0", "0", "0", "1"]
    assert second == [
        "7",
        "42",
        *counts,
        *(b"c", b"3", "9.5", b"c", "2.0", b"d"),
        *("source:orders.purchases", "120"),
    ]


def test_write_arguments_without_index_writes_are_unchanged_in_meaning() -> None:
    (only,) = chunks(Snapshot(items={b"a": b"1"}, offset=None), size=10)
    assert only == ["7", "", "1", "0", "0", "0", "0", "0", "0", "0", b"a", b"1"]


def test_every_value_write_sends_its_contribution_in_its_chunk() -> None:
    """A delete and a value without a contribution both send '' (contributes nothing)."""
    snapshot = Snapshot(items={b"a": b"1", b"b": None, b"c": b"3"}, offset=5)
    contributions: dict[bytes, bytes | None] = {b"a": b'{"n":1}', b"b": None, b"c": None}
    first, second = chunks(snapshot, 2, contributions)
    counts = ["1", "1", "2", "0", "0", "0", "0", "0"]
    assert first == ["7", "", *counts, b"a", b"1", b"b", b"a", b'{"n":1}', b"b", b""]
    assert second == ["7", "5", "1", "0", "1", "0", "0", "0", "0", "0", b"c", b"3", b"c", b""]
