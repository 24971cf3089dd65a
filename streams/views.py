"""HTTP endpoints of a worker: health, readiness and Prometheus metrics (docs/http.md)."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from aiokafka.partitioner import DefaultPartitioner
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.app import ServiceApp
from streams.auth import authorized
from streams.connections import redis_client
from streams.metrics import METRICS
from streams.processing import Processor, utc_now
from streams.unit_of_work import UnitOfWork

# Input records are keyed by customer id with the producer's default
# partitioner, so this is the partition that holds the customer's state.
_PARTITIONER = DefaultPartitioner()


async def _redis_reachable(redis: Any) -> bool:
    try:
        return bool(await asyncio.wait_for(redis.ping(), timeout=1.0))
    except Exception:  # any failure means "not reachable" for readiness
        return False


def _recovery_done(app: faust.App) -> bool:
    recovery = app.tables.recovery  # type: ignore[attr-defined]  # concrete TableManager
    return bool(recovery.completed.is_set()) and not app.rebalancing


def _kafka_state(app: faust.App, inputs: UnitOfWork) -> dict[str, Any]:
    assigned = inputs.assignment()
    return {
        "kafka": bool(assigned) or app.producer.started,
        "partitions_assigned": len(assigned),
        "recovery_done": _recovery_done(app),
    }


def install(service: ServiceApp, processor: Processor, inputs: UnitOfWork) -> None:
    """Attach the health, readiness, metrics and customer views to the app."""
    app, settings, customers = service.app, service.settings, service.customers
    redis = redis_client(settings.redis_url)
    partitions = list(range(settings.partitions))

    @app.page("/healthz")
    class Health(View):
        """Process liveness: answers as long as the event loop runs."""

        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    @app.page("/readyz")
    class Ready(View):
        """Ready when Kafka and Redis answer, partitions are assigned and recovery is done."""

        async def get(self, request: Request) -> Response:
            store = service.customer_store()
            checks: dict[str, Any] = {
                "redis": await _redis_reachable(redis),
                "store": store.ready,
                "store_dirty_keys": store.dirty_keys,
                **_kafka_state(app, inputs),
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
            return self.bytes(
                body, content_type=CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4"
            )

    @app.page("/customers/{customer_id}")
    class Customer(View):
        """A customer's ltv.updates body, answered by the worker that owns the key."""

        # Faust passes the path parameters as keyword arguments; its stub does not say so.
        @app.table_route(table=customers, match_info="customer_id")  # type: ignore[arg-type]
        async def get(self, request: Request, customer_id: str) -> Response:
            if not authorized(request, settings.api_token):
                return self.json(
                    {"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"}
                )
            key = customer_id.encode()
            partition = _PARTITIONER(key, partitions, partitions)
            store = service.customer_store()
            if partition not in store.active_partitions():
                # Routed here by a stale assignment (a rebalance is under way):
                # "unknown" would be a lie, so ask the caller to retry.
                return self.json(
                    {"error": "partition not served here right now, retry", "partition": partition},
                    status=503,
                    headers={"Retry-After": "1"},
                )
            stored = store.read(partition, key)
            if stored is None:
                return self.json(
                    {"error": "unknown customer", "customer_id": customer_id}, status=404
                )
            body = processor.current_update(stored, utc_now())
            return self.bytes(body, content_type="application/json")
