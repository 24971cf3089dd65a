"""The composition root of a worker: everything it runs, built from the settings.

``build_worker`` is the one place that lists what an ``ltv worker`` runs:
the Faust app with its topics and table (``streams.app``), the processor
(``streams.wiring``), the unit of work that consumes the inputs
(``streams.unit_of_work``), the timers and the web views. Importing
this module builds nothing; ``ltv worker`` calls ``build_worker`` once the
settings are known good and the topics exist.
"""

from __future__ import annotations

import logging

import faust

from streams import fit, inactivity, insights_api, lag, model_api, views
from streams.app import build_app
from streams.metrics import METRICS
from streams.settings import Settings
from streams.unit_of_work import UnitOfWork
from streams.wiring import build_processor

#: Client libraries that build a DEBUG record per message sent or received
#: (~6 % of a worker's time) even when no handler prints them.
_CHATTY_LOGGERS = ("aiokafka", "faust.topics", "faust.transport")


async def _quiet_client_loggers() -> None:
    """Raise chatty loggers to INFO once Faust has configured logging."""
    for name in _CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.INFO))


def build_worker(settings: Settings) -> faust.App:
    """The worker's Faust app with the unit of work, every timer and view attached."""
    service = build_app(settings)
    processor = build_processor(settings)
    app = service.app
    # The inputs (purchases, cancellations, feedback, inactivity records), batch by batch.
    inputs = UnitOfWork(service, processor)
    app.service(inputs)  # type: ignore[arg-type]  # Faust starts instances as well
    # Timers: due customers, consumer lag, model reload and the periodic fit.
    inactivity.install(
        app,
        service.customer_store,
        service.topics.inactivity,
        processor,
        METRICS,
        settings.inactivity_interval,
    )
    lag.install(app, METRICS, inputs, settings.input_topics)
    model = fit.install(app, settings, processor)
    # Web views: /healthz, /readyz, /metrics, /customers/{id}, /model, /insights.
    views.install(service, processor, inputs)
    model_api.install(service, model)
    if settings.insights:
        insights_api.install(service, processor, METRICS.registry)
    app.task(_quiet_client_loggers)
    return app
