"""Worker throughput: drain N preloaded events with Redis state and every output published.

Preloads N synthetic events (85 % purchases, 10 % cancellations, 5 % duplicates
from ``ltv demo``'s shop) into fresh topics of a bench app id, starts one
``ltv worker`` and times from its first processed event to the last, read
from its /metrics. Usage::

    .venv/bin/python bench/throughput.py --events 50000 [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import redis
from aiokafka.admin import AIOKafkaAdminClient

from streams.demo import DemoFeed
from streams.publisher import publish
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
_PROCESSED = re.compile(rb"^ltv_events_processed_total\{[^}]*\} ([0-9.e+]+)$", re.M)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _env(app_id: str, port: int, bootstrap: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LTV_")}
    env.update(
        LTV_APP_ID=app_id,
        LTV_BROKER=f"kafka://{bootstrap}",
        LTV_REDIS_URL=redis_url,
        LTV_WEB_PORT=str(port),
        LTV_TOPIC_PURCHASES=f"{app_id}.purchases",
        LTV_TOPIC_CANCELLATIONS=f"{app_id}.cancellations",
        LTV_TOPIC_UPDATES=f"{app_id}.updates",
        LTV_TOPIC_CHURN=f"{app_id}.churn",
        LTV_TOPIC_DEAD_LETTER=f"{app_id}.dead-letter",
        LTV_DATA_DIR=f"/tmp/ltv-bench/{app_id}",
    )
    return env


def _processed(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return sum(float(v) for v in _PROCESSED.findall(response.read()))


async def _cleanup(app_id: str, bootstrap: str, redis_url: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(app_id)]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"*{app_id}*", count=1000))
    if keys:
        client.delete(*keys)


def run(
    events: int, customers: int, bootstrap: str, redis_url: str, timeout: float
) -> dict[str, float]:
    app_id = f"bench{uuid.uuid4().hex[:8]}"
    port = _free_port()
    env = _env(app_id, port, bootstrap, redis_url)
    os.environ.update({k: v for k, v in env.items() if k.startswith("LTV_")})
    settings = Settings()
    feed = DemoFeed(customers, seed=8, start=datetime(2025, 1, 1, tzinfo=UTC), span_days=365)
    loaded = asyncio.run(publish(feed, settings, limit=events))
    log = open(f"/tmp/ltv-bench-{app_id}.log", "wb")  # noqa: SIM115 - lives as long as the worker
    worker = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "warn"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + timeout
        first = None
        done = 0.0
        while time.monotonic() < deadline:
            try:
                done = _processed(port)
            except OSError:
                done = 0.0
            now = time.monotonic()
            if done > 0 and first is None:
                first = (now, done)
            if done >= loaded:
                break
            time.sleep(0.2)
        if first is None or done < loaded:
            raise SystemExit(f"worker processed {done:.0f} of {loaded} within {timeout}s")
        elapsed = time.monotonic() - first[0]
        rate = (loaded - first[1]) / elapsed
    finally:
        worker.terminate()
        worker.wait(30)
        asyncio.run(_cleanup(app_id, bootstrap, redis_url))
    return {"events": loaded, "seconds": round(elapsed, 2), "worker_events_per_s": round(rate)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument(
        "--bootstrap", default=os.environ.get("LTV_TEST_BOOTSTRAP", "127.0.0.1:9092")
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("LTV_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = run(args.events, args.customers, args.bootstrap, args.redis_url, args.timeout)
    for key, value in result.items():
        print(f"{key:>22}  {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
