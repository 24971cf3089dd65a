"""Entry module of a worker: the app with its agents, timers and views attached.

``faust -A streams.worker worker`` and ``ltv worker`` both load this module.
"""

from __future__ import annotations

from streams import agents, model_api, views
from streams.app import app

__all__ = ["agents", "app", "model_api", "views"]
