"""The model inside a worker: reload and periodic-fit timers, and ``GET /model``.

``streams.fit.install`` attaches the timers; this module holds the model in
force and serves it (DESIGN §10). Before the first successful fit the body
has ``"version": null`` and no models, and workers value with the heuristic.
"""

from __future__ import annotations

from faust.web import Request, Response, View

from streams.agents import processor
from streams.app import app, settings
from streams.auth import authorized
from streams.fit import install

model = install(app, settings, processor)


@app.page("/model")
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
