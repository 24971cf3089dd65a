"""Pure logic of the store: write-back buffer generations, LRU, key layout, URL."""

from __future__ import annotations

import pytest

from state.store.buffer import CleanCache, PartitionBuffer
from state.store.config import StoreConfig
from state.store.keys import KeyLayout


def test_reads_see_newest_generation_first() -> None:
    buffer = PartitionBuffer()
    buffer.write(b"k", b"1")
    buffer.seal(acked_offset=10)
    snapshot = buffer.take()
    buffer.write(b"k", b"2")
    assert buffer.lookup(b"k") == (True, b"2")
    assert snapshot.items == {b"k": b"1"} and snapshot.offset == 10
    buffer.write(b"k", None)
    assert buffer.lookup(b"k") == (True, None)
    assert buffer.lookup(b"other") == (False, None)


def test_only_sealed_writes_are_taken() -> None:
    buffer = PartitionBuffer()
    buffer.write(b"a", b"1")
    assert not buffer.pending()
    buffer.seal(acked_offset=None)
    buffer.write(b"b", b"2")
    assert buffer.take().items == {b"a": b"1"}
    assert buffer.open == {b"b": b"2"}


def test_abort_puts_writes_back_under_newer_sealed_ones() -> None:
    buffer = PartitionBuffer()
    buffer.write(b"a", b"old")
    buffer.write(b"b", b"old")
    buffer.seal(acked_offset=5)
    buffer.take()
    buffer.write(b"a", b"new")
    buffer.seal(acked_offset=7)
    buffer.abort()
    assert buffer.sealed == {b"a": b"new", b"b": b"old"}
    assert not buffer.inflight and buffer.sealed_offset == 7


def test_source_progress_moves_with_its_generation_and_never_back() -> None:
    buffer = PartitionBuffer()
    buffer.advance("purchases", 10)
    buffer.write(b"a", b"1")
    assert not buffer.pending()  # open progress is not flushable yet
    buffer.seal(acked_offset=None)
    buffer.advance("purchases", 20)  # a later batch, not sealed
    assert buffer.take().sources == {"purchases": 10}
    buffer.seal(acked_offset=None)
    buffer.abort()  # the flush of 10 failed; 20 was sealed meanwhile
    assert buffer.sealed_sources == {"purchases": 20}
    buffer.advance("purchases", 5)  # a stale mark never moves progress back
    buffer.seal(acked_offset=None)
    assert buffer.sealed_sources == {"purchases": 20}
    snapshot = buffer.take()
    buffer.settle(snapshot)
    assert snapshot.sources == {"purchases": 20} and not buffer.pending()


def test_settle_records_the_offset_and_stops_offset_only_flushes() -> None:
    buffer = PartitionBuffer()
    buffer.write(b"a", b"1")
    buffer.seal(acked_offset=3)
    snapshot = buffer.take().covering(9)
    assert snapshot.offset == 9
    buffer.settle(snapshot)
    assert buffer.flushed_offset == 9 and buffer.sealed_offset == 9
    assert not buffer.pending()
    buffer.seal(acked_offset=12)
    assert buffer.pending()


def test_offsets_never_move_backwards() -> None:
    buffer = PartitionBuffer()
    buffer.recover(b"a", b"1", offset=20)
    buffer.seal(acked_offset=4)
    assert buffer.sealed_offset == 20
    assert buffer.take().covering(3).offset == 20


def test_clean_cache_evicts_least_recently_used_and_drops_partitions() -> None:
    cache: CleanCache[tuple[int, bytes]] = CleanCache(capacity=2)
    cache.put((0, b"a"), b"1")
    cache.put((0, b"b"), None)
    assert cache.lookup((0, b"a")) == (True, b"1")
    cache.put((1, b"c"), b"3")
    assert (0, b"b") not in cache and (0, b"a") in cache
    assert cache.lookup((0, b"b")) == (False, None)
    cache.discard_where(lambda entry: entry[0] == 0)
    assert len(cache) == 1


def test_key_layout_shares_one_hash_tag_and_escapes_names() -> None:
    layout = KeyLayout("ltv:stream*", "customers")
    assert layout.data_key(3) == b"{ltv:ltv%3Astream%2A:customers:3}:data"
    assert layout.meta_key(3).startswith(layout.tag(3).encode())
    assert layout.scan_pattern() == "{ltv:ltv%3Astream%2A:customers:*"
    assert KeyLayout("a:b", "c").tag(0) != KeyLayout("a", "b:c").tag(0)


def test_store_url_options_and_cluster_forms() -> None:
    config = StoreConfig.from_url("rediss+cluster://h:7000/0?flush_interval=0.2&ssl_cert_reqs=none")
    assert config.cluster and config.flush_interval == 0.2
    assert config.client_url == "rediss://h:7000/0?ssl_cert_reqs=none"
    assert StoreConfig.from_url("redis://h/1?cluster=1").cluster
    assert not StoreConfig.from_url("redis://h/1").cluster
    with pytest.raises(ValueError, match="not a Redis store URL"):
        StoreConfig.from_url("memory://")
    with pytest.raises(ValueError, match="bad option"):
        StoreConfig.from_url("redis://h?max_dirty=lots")
