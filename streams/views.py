"""HTTP endpoints of a worker: health, readiness and Prometheus metrics (DESIGN §10)."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.app import app, customer_store, settings
from streams.connections import redis_client
from streams.metrics import METRICS

_redis = redis_client(settings.redis_url)


async def _redis_reachable() -> bool:
    try:
        return bool(await asyncio.wait_for(_redis.ping(), timeout=1.0))
    except Exception:  # any failure means "not reachable" for readiness
        return False


def _recovery_done() -> bool:
    recovery = app.tables.recovery  # type: ignore[attr-defined]  # concrete TableManager
    return bool(recovery.completed.is_set()) and not app.rebalancing


def _kafka_state() -> dict[str, Any]:
    consumer = app.consumer
    assigned = consumer.assignment() if consumer is not None else set()
    return {
        "kafka": bool(assigned) or app.producer.started,
        "partitions_assigned": len(assigned),
        "recovery_done": _recovery_done(),
    }


@app.page("/healthz")
class Health(View):
    """Process liveness: answers as long as the event loop runs."""

    async def get(self, request: Request) -> Response:
        return self.json({"status": "ok"})


@app.page("/readyz")
class Ready(View):
    """Ready when Kafka and Redis answer, partitions are assigned and recovery is done."""

    async def get(self, request: Request) -> Response:
        store = customer_store()
        checks: dict[str, Any] = {
            "redis": await _redis_reachable(),
            "store": store.ready,
            "store_dirty_keys": store.dirty_keys,
            **_kafka_state(),
        }
        ready = (
            checks["redis"]
            and checks["store"]
            and checks["kafka"]
            and checks["partitions_assigned"] > 0
            and checks["recovery_done"]
        )
        return self.json({"ready": ready, "checks": checks}, status=200 if ready else 503)


@app.page("/metrics")
class Metrics(View):
    """Prometheus exposition of the worker's metrics."""

    async def get(self, request: Request) -> Response:
        # aiohttp wants the charset apart from the content type.
        body = generate_latest(METRICS.registry)
        return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4")
