"""A minimal Faust worker for the store's integration tests (run as a subprocess).

Per key it keeps an idempotent counter with the set of event ids it has
applied -- the shape of the real customer state (idempotency ledger) without
depending on the domain code. Keys and values use Faust's default JSON
serializers; the store only ever sees the serialized bytes. Configured by
environment: STORE_TEST_APP_ID, STORE_TEST_TOPIC, STORE_TEST_PARTITIONS,
STORE_TEST_STATS (file that receives ``{"recovered": <changelog records
applied>}``), LTV_BROKER and the store URL STORE_TEST_REDIS_URL.

Run: ``faust -A store_worker worker -l warn`` with this directory on sys.path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import faust
from faust.types import EventT

import state.store
from state.store import RedisStore

state.store.register()

app = faust.App(
    os.environ["STORE_TEST_APP_ID"],
    broker=os.environ.get("LTV_BROKER", "kafka://127.0.0.1:9092"),
    store=os.environ["STORE_TEST_REDIS_URL"],
    web_enabled=False,
    topic_partitions=int(os.environ["STORE_TEST_PARTITIONS"]),
    table_standby_replicas=0,
    consumer_auto_offset_reset="earliest",
    stream_recovery_delay=0.0,
    broker_session_timeout=6.0,
    broker_heartbeat_interval=1.0,
    broker_commit_interval=0.5,
)

source = app.topic(
    os.environ["STORE_TEST_TOPIC"],
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)

counters = app.Table("counters", default=None, partitions=int(os.environ["STORE_TEST_PARTITIONS"]))


def _store() -> RedisStore:
    store = counters.data
    assert isinstance(store, RedisStore)
    return store


_stats_path = Path(os.environ["STORE_TEST_STATS"])
_recovered = 0


_apply_changelog_batch = RedisStore.apply_changelog_batch


def _counting_apply(self: RedisStore, batch: Any, to_key: Any, to_value: Any) -> None:
    """Count the changelog records recovery applies (0 means: no replay)."""
    global _recovered
    events = list(batch)
    _recovered += len(events)
    _stats_path.write_text(json.dumps({"recovered": _recovered}))
    _apply_changelog_batch(self, events, to_key, to_value)


RedisStore.apply_changelog_batch = _counting_apply  # type: ignore[method-assign]


@app.agent(source)
async def count(stream: faust.StreamT[bytes]) -> None:
    """Apply each event once: count it unless its id was already applied."""
    event: EventT[bytes]
    async for event in stream.events():
        raw_key = event.key
        assert isinstance(raw_key, bytes)
        await _store().prefetch({event.message.partition: [json.dumps(raw_key.decode()).encode()]})
        key = raw_key.decode()
        value = counters.get(key) or {"n": 0, "ids": []}
        event_id = event.value.decode()
        if event_id not in value["ids"]:
            value["n"] += 1
            value["ids"].append(event_id)
            counters[key] = value
        # Never sealed explicitly: each flush first flushes Faust's producer
        # (the store's mode for plain Faust table users).
