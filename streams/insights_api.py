"""Live group figures (docs/insights.md), read where they are exact: Redis.

Every partition's sums live in Redis beside its customers (``state.store.sums``),
kept exact by the store's write script. Reading them needs no worker state, so
any worker answers ``GET /insights`` for the whole deployment, and ``ltv
insights`` answers without a worker: both merge the partitions' sums by
addition and compute the figures as of a read clock (``ltv.insights``).
What a worker has not flushed yet (``LTV_STORE_URL`` ``flush_interval``,
0.5 s by default) is not in them.

Every worker also mirrors the figures into the ``ltv_insights_*`` gauges every
``LTV_INSIGHTS_INTERVAL`` seconds (``streams.insights_metrics``). They are the
deployment's figures, the same on every worker, so dashboards take ``max``
over workers, never ``sum``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import redis.exceptions
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from ltv.insights import Insights, insights
from state.insights import Aggregate
from state.store.config import StoreConfig
from state.store.keys import KeyLayout
from state.store.sums import read_sums
from streams.admin import TABLE
from streams.app import ServiceApp
from streams.auth import authorized
from streams.insights_metrics import InsightsGauges
from streams.processing import Processor, utc_now
from streams.settings import Settings
from streams.wiring import insights_config

log = logging.getLogger(__name__)


async def merged_sums(client: Any, settings: Settings) -> Aggregate:
    """The sums of every partition of the deployment, added up."""
    layout = KeyLayout(settings.app_id, TABLE)
    merged = Aggregate()
    for sums in (await read_sums(client, layout, range(settings.partitions))).values():
        merged.merge(Aggregate(sums))
    return merged


async def current_insights(client: Any, settings: Settings, clock: datetime) -> Insights:
    """The deployment's group figures as of ``clock``."""
    return insights(await merged_sums(client, settings), clock, insights_config(settings))


def install(service: ServiceApp, processor: Processor, registry: CollectorRegistry) -> None:
    """Serve the figures at ``GET /insights`` (same token rule as ``/model``)
    and refresh the gauges on ``registry`` with them on a timer.

    The clock is the processor's: the wall clock, or the event-time
    watermark when the worker replays history (``LTV_CLOCK=event``).
    """
    settings = service.settings
    client = StoreConfig.from_url(settings.redis_url).async_client()
    gauges = InsightsGauges(settings.cac, registry)

    @service.app.timer(settings.insights_interval, name="ltv.insights_gauges")
    async def refresh() -> None:
        """One refresh; a Redis failure keeps the last figures until the next tick."""
        try:
            figures = await current_insights(client, settings, processor.clock(utc_now()))
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("insights gauges not refreshed: Redis unavailable: %r", exc)
            return
        gauges.update(figures)

    @service.app.page("/insights")
    class InsightsView(View):
        """Group figures of all partitions; 401 without the configured token."""

        async def get(self, request: Request) -> Response:
            if not authorized(request, settings.api_token):
                return self.json(
                    {"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"}
                )
            try:
                figures = await current_insights(client, settings, processor.clock(utc_now()))
            except (redis.exceptions.RedisError, OSError) as exc:
                log.warning("GET /insights: Redis unavailable: %r", exc)
                return self.json(
                    {"error": "Redis unavailable, retry", "detail": type(exc).__name__},
                    status=503,
                    headers={"Retry-After": "1"},
                )
            return self.bytes(figures.to_json(), content_type="application/json")
