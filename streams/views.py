"""HTTP endpoints of a worker: health, readiness and Prometheus metrics (docs/http.md)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.partitioner import DefaultPartitioner
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from state.store.config import StoreConfig, mask_url
from streams.app import ServiceApp
from streams.auth import authorized
from streams.metrics import METRICS
from streams.processing import Processor, utc_now
from streams.unit_of_work import UnitOfWork

# Input records are keyed by customer id with the producer's default
# partitioner, so this is the partition that holds the customer's state.
_PARTITIONER = DefaultPartitioner()
#: Longest wait for Redis to answer the readiness PING (s).
PING_TIMEOUT = 1.0

log = logging.getLogger(__name__)


async def redis_problem(redis: Any) -> str | None:
    """Why Redis does not answer a PING (for /readyz and its log), or None when it does."""
    try:
        answered = await asyncio.wait_for(redis.ping(), timeout=PING_TIMEOUT)
    except TimeoutError:
        return f"no answer to PING within {PING_TIMEOUT:g} s"
    except Exception as exc:  # any failure means "not reachable"; the reason is logged
        return f"{type(exc).__name__}: {mask_url(str(exc))}"
    return None if answered else "PING not answered"


def readiness_problems(checks: dict[str, Any], redis: str | None) -> list[str]:
    """Why the readiness ``checks`` fail, one phrase per failing check (none: ready)."""
    problems = [] if redis is None else [f"redis unreachable ({redis})"]
    if not checks["store"]:
        problems.append("store not ready (Redis failing, buffer full or assignment unclaimed)")
    if not checks["kafka"]:
        problems.append("kafka: no partitions assigned and producer not started")
    if checks["partitions_assigned"] == 0:
        problems.append("no input partitions assigned")
    if not checks["recovery_done"]:
        problems.append("table recovery or rebalance under way")
    return problems


@dataclass
class ReadinessLog:
    """Logs why the worker is not ready: once per change of reason, once on recovery.

    Orchestrators probe /readyz every few seconds: a line per probe would
    drown the log, and no line at all leaves a 503 unexplained.
    """

    logger: logging.Logger
    #: The reason logged last (None: ready); ``seen`` is False before the first probe.
    reason: str | None = None
    seen: bool = False

    def observe(self, problems: list[str]) -> None:
        """Log the outcome of one probe if it differs from the last one logged."""
        reason = "; ".join(problems) or None
        if self.seen and reason == self.reason:
            return
        if reason is None:
            self.logger.info("readiness: ready")
        else:
            self.logger.warning("readiness: not ready: %s", reason)
        self.reason, self.seen = reason, True


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
    redis = StoreConfig.from_url(settings.redis_url).async_client()
    readiness = ReadinessLog(log)
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
            problem = await redis_problem(redis)
            checks: dict[str, Any] = {
                "redis": problem is None,
                "store": store.ready,
                "store_dirty_keys": store.dirty_keys,
                **_kafka_state(app, inputs),
            }
            problems = readiness_problems(checks, problem)
            readiness.observe(problems)
            ready = not problems
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
