"""Benchmark of the Redis table store (not a test).

Measures, against the Redis in LTV_REDIS_URL: keys/s flushed into Redis,
Redis bytes per customer (INFO used_memory delta / N, ~200-byte values), and
the store's share of a restart with N customers in Redis (claim + offset
read, i.e. the time before Faust may resume consuming; Faust's own worker
start-up is NOT included). Prints a table; ``--json PATH`` writes the figures.

    .venv/bin/python bench/store.py --customers 100000 1000000 [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from types import SimpleNamespace
from typing import Any

from faust.types import TP
from mode.signals import Signal
from prometheus_client import CollectorRegistry

from state.store import RedisStore
from state.store.metrics import StoreMetrics

REDIS_URL = os.environ.get("LTV_REDIS_URL", "redis://127.0.0.1:6379/0")
CHANGELOG = "bench-customers-changelog"


class _Producer:
    async def flush(self) -> None:
        """Nothing to wait for: the bench sends no Kafka records."""


def _store(app_id: str) -> RedisStore:
    async def highwaters(*tps: TP) -> dict[TP, int]:
        return {tp: 2**62 for tp in tps}

    app: Any = SimpleNamespace(
        conf=SimpleNamespace(id=app_id),
        on_partitions_revoked=Signal(),
        assignor=SimpleNamespace(assigned_standbys=lambda: set()),
        consumer=SimpleNamespace(highwaters=highwaters),
        producer=_Producer(),
    )
    table: Any = SimpleNamespace(
        name="customers", changelog_topic=SimpleNamespace(topics={CHANGELOG}), is_global=False
    )
    return RedisStore(
        f"{REDIS_URL}?flush_interval=3600&max_dirty=100000000",
        app,
        table,
        options={"metrics": StoreMetrics(CollectorRegistry())},
    )


async def run(customers: int, partitions: int = 8) -> dict[str, float]:
    app_id = f"bench-{uuid.uuid4().hex[:8]}"
    tps = {TP(CHANGELOG, p) for p in range(partitions)}
    store = _store(app_id)
    try:
        await store.on_rebalance(tps, set(), tps)
        before = int(store._sync.info("memory")["used_memory"])
        value = os.urandom(100).hex().encode()  # 200 bytes
        for n in range(customers):
            store._owned[n % partitions].buffer.write(f"c-{n}".encode(), value)
        for p in range(partitions):
            store.set_persisted_offset(TP(CHANGELOG, p), customers // partitions)
        store.seal()
        started = time.perf_counter()
        await store.flush()
        flush_s = time.perf_counter() - started
        after = int(store._sync.info("memory")["used_memory"])

        restarted = _store(app_id)
        started = time.perf_counter()
        await restarted.on_rebalance(tps, set(), tps)
        restart_s = time.perf_counter() - started
        assert all(restarted.persisted_offset(tp) is not None for tp in tps)
        return {
            "customers": customers,
            "flush_keys_per_s": customers / flush_s,
            "restart_claim_s": restart_s,
            "redis_bytes_per_customer": (after - before) / customers,
        }
    finally:
        store.reset_state()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    rows = [asyncio.run(run(n)) for n in args.customers]
    print(f"{'customers':>10} {'flush keys/s':>14} {'restart claim s':>16} {'bytes/customer':>15}")
    for row in rows:
        print(
            f"{row['customers']:>10} {row['flush_keys_per_s']:>14,.0f} "
            f"{row['restart_claim_s']:>16.4f} {row['redis_bytes_per_customer']:>15.1f}"
        )
    if args.json_path:
        with open(args.json_path, "w") as out:
            json.dump(rows, out, indent=2)


if __name__ == "__main__":
    main()
