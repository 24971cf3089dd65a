"""Partition sums (``state.store.sums``) against the real Redis: after every flush,
whatever was written, rewritten, deleted, replayed or split across chunks, the
sums hash equals the sum of the contributions of the values in the data hash,
computed here in Python from what the test wrote."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace

import orjson
import pytest
from faust.types import TP
from store_fixtures import require_servers
from test_store_fencing import CHANGELOG, TP0, make_store

from state.store import RedisStore
from state.store.sums import read_sums

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

_SEP = b"|"


class Tail:
    """Test values ``payload|contribution``: the contribution rides after the bar."""

    def split(self, value: bytes) -> tuple[bytes, bytes | None]:
        payload, _, contribution = value.partition(_SEP)
        return payload, contribution or None


def value(payload: str, contribution: dict[str, int] | None) -> bytes:
    tail = b"" if contribution is None else orjson.dumps(contribution)
    return payload.encode() + _SEP + tail


@pytest.fixture
async def store() -> AsyncIterator[RedisStore]:
    require_servers()
    store = make_store(f"sums-{uuid.uuid4().hex[:8]}", [], contributions=Tail())
    await store.on_rebalance({TP0}, set(), {TP0})
    yield store
    store.reset_state()


async def flush(store: RedisStore, writes: dict[bytes, bytes | None], offset: int) -> None:
    for key, raw in writes.items():
        store._owned[0].buffer.write(key, raw)
    store.set_persisted_offset(TP(CHANGELOG, 0), offset)
    store.seal()
    await store.flush()


def expected(current: dict[bytes, dict[str, int] | None]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for contribution in current.values():
        total.update(contribution or {})
    return {name: amount for name, amount in total.items() if amount}


async def stored_sums(store: RedisStore) -> dict[str, int]:
    return (await read_sums(store._async, store.layout, [0]))[0]


async def test_sums_follow_every_write_rewrite_and_delete(store: RedisStore) -> None:
    rng = random.Random(16)
    names = [f"g|{i}" for i in range(12)]
    current: dict[bytes, dict[str, int] | None] = {}
    for round_ in range(40):
        store.config = replace(store.config, chunk_keys=1 + round_ % 4)
        writes: dict[bytes, bytes | None] = {}
        for _ in range(rng.randint(1, 9)):
            key = f"c{rng.randint(0, 14)}".encode()
            roll = rng.random()
            if roll < 0.15:
                writes[key] = None
                current.pop(key, None)
            else:
                c = None if roll < 0.25 else {n: rng.randint(-5, 900) for n in rng.sample(names, 3)}
                writes[key] = value(f"v{round_}", c)
                current[key] = c
        await flush(store, writes, round_)
        assert await stored_sums(store) == expected(current), f"round {round_}"
    contributions = store._sync.hgetall(store.layout.contributions_key(0))
    assert contributions == {k: orjson.dumps(c) for k, c in current.items() if c is not None}
    data = store._sync.hgetall(store.layout.data_key(0))
    assert all(_SEP not in v for v in data.values()), "the data hash keeps values without them"


async def test_a_replayed_value_changes_no_sum(store: RedisStore) -> None:
    """Recovery rewrites values the store already holds: the sums must not move."""
    writes = {b"a": value("1", {"n": 1, "m": 7}), b"b": value("2", {"n": 1})}
    await flush(store, writes, 1)
    await flush(store, writes, 2)
    assert await stored_sums(store) == {"n": 2, "m": 7}


async def test_sums_reaching_zero_leave_the_hash(store: RedisStore) -> None:
    await flush(store, {b"a": value("1", {"n": 1, "m": 3})}, 1)
    await flush(store, {b"a": value("1", {"n": 1})}, 2)
    assert store._sync.hkeys(store.layout.sums_key(0)) == [b"n"]
    await flush(store, {b"a": None}, 3)
    assert await stored_sums(store) == {}
    assert store._sync.hlen(store.layout.contributions_key(0)) == 0


async def test_amounts_beyond_32_bits_stay_exact(store: RedisStore) -> None:
    """Money is kept in 1/10000 units: a big shop's sums exceed 2**32 quickly."""
    big = 4_000_000_000_000_001  # 4e15 + 1 < 2**53: exact in the script's doubles
    await flush(store, {b"a": value("1", {"n": big}), b"b": value("2", {"n": big})}, 1)
    assert await stored_sums(store) == {"n": 2 * big}  # above 2**53, as a Redis integer
    await flush(store, {b"a": value("1", {"n": 1})}, 2)
    assert await stored_sums(store) == {"n": big + 1}


async def test_a_fenced_flush_moves_no_sum(store: RedisStore) -> None:
    await flush(store, {b"a": value("1", {"n": 1})}, 1)
    rival = make_store(store.layout.app_id, [], contributions=Tail())
    await rival.on_rebalance({TP0}, set(), {TP0})
    await flush(store, {b"a": value("1", {"n": 50}), b"b": value("2", {"n": 2})}, 2)
    assert await stored_sums(store) == {"n": 1}
    assert 0 not in store.active_partitions()


async def test_a_wipe_drops_the_sums_with_the_data(store: RedisStore) -> None:
    await flush(store, {b"a": value("1", {"n": 1})}, 1)
    store._clear()
    assert await stored_sums(store) == {}
    assert store._sync.exists(store.layout.contributions_key(0)) == 0
