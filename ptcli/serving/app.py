"""The FastAPI app: ptcli's own routes (``routes.py``: /, /health, /ready, /metrics,
/predict/{name}), the Open Inference Protocol v2 (``v2.py``), OpenAI's for language models
(``openai_api.py``), and the OpenAPI schema of them all at /openapi.json (/docs to read it),
every request through ``middleware.py`` (ids, keys, logs, metrics, errors as JSON).

Models load in the background after the server starts, so /health answers at once and /ready
says 503 until every model is loaded and warm. Every error is a JSON object {"error": ...}
(OpenAI's shape on /v1); nothing a client sends can take the server down, show it a traceback
or count as a server error. One JSON log line per request goes to stderr, its id also in the
X-Request-ID response header.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import FastAPI

from . import schema
from .auth import Keys
from .routes import ROUTES  # noqa: F401 (the route list the deployment files are checked against)
from .state import OPEN_ROUTES, STREAM_END, Settings, State, jsonable, log, server_version  # noqa: F401
from .workers import Hooks, LocalModel


def create_app(models, settings: Settings | None = None):
    """The app over ``models`` (LocalModel or ReplicaPool objects, each named and built with
    its settings), or over one model that ``models()`` loads (a Servable), named "model"."""
    from . import browser, middleware, openai_api, routes, v2
    from .openapi import openapi_schema

    settings = settings or Settings()
    if callable(models):
        models = [LocalModel("model", models, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                             max_queue=settings.max_queue, timeout_s=settings.timeout_s)]
    state, keys = State(models, settings), Keys(settings.api_keys)
    for model in models:  # each model reports to this server's metrics and log
        state.metrics.add_model(model.name, model.queue_depth)
        model.hooks = Hooks(on_batch=state.metrics.batch_size.labels(model=model.name).observe,
                            on_drop=state.metrics.dropped.labels(model=model.name).inc, log=log,
                            on_stages=lambda pairs, name=model.name: state.metrics.observe_stages(name, pairs),
                            on_restart=state.metrics.restarts.labels(model=model.name).inc)
        model.on_load_error = lambda message, name=model.name: state.on_load_error(
            message if len(state.models) == 1 else f"model {name}: {message}")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        for model in models:
            await model.start()
        yield
        await asyncio.gather(*(model.stop() for model in models))

    app = FastAPI(title="ptcli serve", version=server_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  description=schema.DESCRIPTION, openapi_tags=schema.TAGS)
    app.state.ptcli = state
    middleware.add_middleware(app, state, keys)
    middleware.add_error_handlers(app)
    routes.add_routes(app, state, keys)
    v2.add_routes(app, state)
    openai_api.add_routes(app, state)
    browser.add_routes(app, keyed=bool(keys))
    app.openapi = lambda: openapi_schema(app, state)
    return app
