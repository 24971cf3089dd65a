"""N customers in a worker's state without pushing N events through a worker.

Loading a million customers through one worker takes far longer than the
benchmarks that need them (recovery, memory), so this writes what a worker
would have left behind, consistently, straight into the servers:

* the encoded states (``state.codec``) of real customers of the bench feed
  (their events applied with the worker's own transitions), cycled over N
  customer ids, each in the table partition the producer's default
  partitioner gives its key;
* one changelog record per customer in ``<app id>-customers-changelog``,
  same partition;
* per partition the Redis data hash, a schedule entry per customer (as the
  unit of work files one with every write), each customer's insights
  contribution and the partition's sums (``state.store.sums``, the states
  valued by the heuristic, as before a first fit), and the metadata
  ``offset`` = the last changelog offset, so the store reports "Redis has
  everything" and Faust replays nothing.

What it does not reproduce: epochs (claimed afresh by the worker anyway)
and states of customers with long histories (the feed's customers have a
handful of orders each, like the throughput feed).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

from _harness import Infra, applied, feed
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2

from ltv.valuation import value
from state import envelope
from state.codec import encode_state
from state.customer import CustomerState, StateConfig
from state.fx import load_fx_table
from state.insights import Aggregate, Contribution, Valued
from state.store.config import StoreConfig
from state.store.keys import OFFSET_FIELD, KeyLayout
from streams.demo import DemoEvent
from streams.settings import Settings
from streams.wiring import build_processor

TABLE = "customers"
#: Distinct customer histories cycled over the N ids.
TEMPLATES = 2_000
_BATCH = 5_000


def customer_id(n: int) -> str:
    return f"p-{n:07d}"


def partition_of(key: bytes, partitions: int) -> int:
    """The partition aiokafka's (and Kafka's) default partitioner picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def templates(count: int = TEMPLATES) -> list[CustomerState]:
    """States of ``count`` feed customers (those with orders), cycled over the N ids."""
    cfg = StateConfig(fx=load_fx_table())
    states = applied(itertools.islice(feed(count, seed=3), count * 4), cfg)
    return [s for s in states.values() if s.orders]


def states(n: int, settings: Settings) -> Iterator[tuple[bytes, bytes]]:
    """(key, table value) of customers ``p-0000000`` .. ``p-<n-1>``: the state,
    with insights on its valuation part and its contribution, as the worker
    writes them."""
    bases = templates()
    processor = build_processor(settings)
    cfg = processor.insights_cfg
    now = datetime.now(UTC)
    parts: list[tuple[bytes | None, bytes | None]] = []
    for s in bases:
        if cfg is None:
            parts.append((None, None))
            continue
        valued = Valued.of(value(processor.figures(s, now), None, processor.valuation_cfg, now))
        parts.append((valued.encode(), Contribution.of(s, valued, cfg, s.nps_class).encode()))
    for i in range(n):
        cid = customer_id(i)
        state = replace(bases[i % len(bases)], customer_id=cid)
        valued, contribution = parts[i % len(bases)]
        raw = envelope.encode(encode_state(state), valued=valued, contribution=contribution)
        yield cid.encode(), raw


async def _write_changelog(
    topic: str, partitions: int, items: list[tuple[int, bytes, bytes]], servers: Infra
) -> dict[int, int]:
    """Produce the changelog; return each partition's last offset."""
    admin = AIOKafkaAdminClient(**servers.kafka())
    await admin.start()
    try:
        compacted = {"cleanup.policy": "compact"}
        await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=compacted)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**servers.kafka(), linger_ms=20, max_batch_size=1_000_000, acks=1)
    await producer.start()
    last: dict[int, int] = {}
    try:
        for start in range(0, len(items), _BATCH):
            futures = [
                await producer.send(topic, value, key=key, partition=p)
                for p, key, value in items[start : start + _BATCH]
            ]
            for (p, _, _), meta in zip(
                items[start : start + _BATCH], await asyncio.gather(*futures), strict=True
            ):
                last[p] = max(last.get(p, -1), meta.offset)
    finally:
        await producer.stop()
    return last


def populate(n: int, settings: Settings, servers: Infra) -> dict[str, float]:
    """Write ``n`` customers' state for app ``settings.app_id``; return Redis figures."""
    started = time.monotonic()
    parts = settings.partitions
    items = [(partition_of(k, parts), k, v) for k, v in states(n, settings)]
    topic = f"{settings.app_id}-{TABLE}-changelog"
    last = asyncio.run(_write_changelog(topic, parts, items, servers))
    client = StoreConfig.from_url(servers.redis_url).sync_client()
    before = int(client.info("memory")["used_memory"])
    layout = KeyLayout(settings.app_id, TABLE)
    rng = random.Random(n)
    now = datetime.now(UTC).timestamp()
    sums = [Aggregate() for _ in range(parts)]
    for start in range(0, len(items), _BATCH):
        pipe = client.pipeline(transaction=False)
        for p, key, raw in items[start : start + _BATCH]:
            kept, contribution = envelope.split_contribution(raw)
            pipe.hset(layout.data_key(p), key, kept)
            if contribution is not None:
                pipe.hset(layout.contributions_key(p), key, contribution)
                sums[p].add(Contribution.decode(contribution))
            pipe.zadd(layout.index_key(p, "schedule"), {key: now + rng.uniform(1, 90) * 86_400})
        pipe.execute()
    for p, partition_sums in enumerate(sums):
        if partition_sums:
            client.hset(layout.sums_key(p), mapping=dict(partition_sums))
    for p, offset in last.items():
        client.hset(layout.meta_key(p), OFFSET_FIELD, offset)
    used = int(client.info("memory")["used_memory"]) - before
    return {
        "customers": n,
        "populate_s": round(time.monotonic() - started, 1),
        "state_bytes_mean": round(sum(len(envelope.state_of(v)) for _, _, v in items) / n),
        "contribution_bytes_mean": round(
            sum(len(envelope.split_contribution(v)[1] or b"") for _, _, v in items) / n
        ),
        "redis_bytes_per_customer": round(used / n),
    }


def purchases(population: int, count: int, tag: str) -> Iterator[DemoEvent]:
    """``count`` new purchases of random existing customers (ids unique per ``tag``)."""
    rng = random.Random(tag)
    now = datetime.now(UTC)
    for i in range(count):
        cid = customer_id(rng.randrange(population))
        body = {
            "event_id": f"e-{tag}-{i}",
            "order_id": f"o-{tag}-{i}",
            "customer_id": cid,
            "occurred_at": now.isoformat(),
            "amount": f"{rng.uniform(5, 200):.2f}",
            "currency": "USD",
            "channel": "email",
        }
        yield DemoEvent("purchase", cid, body)
