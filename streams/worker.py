"""Entry module of a worker: the app with its agents, timers and views attached.

``ltv worker`` loads this module after creating the topics.
"""

from __future__ import annotations

import logging

from streams import agents, lag, model_api, views
from streams.app import app, settings
from streams.metrics import METRICS

lag.install(app, METRICS, (settings.topic_purchases, settings.topic_cancellations))

#: Client libraries that build a DEBUG record per message sent or received
#: (~6 % of a worker's time) even when no handler prints them.
_CHATTY_LOGGERS = ("aiokafka", "faust.topics", "faust.transport")


@app.task
async def _quiet_client_loggers() -> None:
    """Raise chatty loggers to INFO once Faust has configured logging."""
    for name in _CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.INFO))


__all__ = ["agents", "app", "model_api", "views"]
