"""The model in force on a worker, served at ``GET /model``.

``streams.fit.install`` attaches the timers and holds the model in force;
this module serves it (docs/http.md). Before the first successful fit the body
has ``"version": null`` and no models, and workers value with the heuristic.
"""

from __future__ import annotations

from faust.web import Request, Response, View

from streams.app import ServiceApp
from streams.auth import authorized
from streams.fit import ModelInForce


def install(service: ServiceApp, model: ModelInForce) -> None:
    """Serve ``model`` (the one in force on this worker) at ``GET /model``."""
    settings = service.settings

    @service.app.page("/model")
    class Model(View):
        """The parameters in force on this worker; 401 without the configured token."""

        async def get(self, request: Request) -> Response:
            if not authorized(request, settings.api_token):
                return self.json(
                    {"error": "unauthorized"},
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            return self.json(model.record.as_json())
