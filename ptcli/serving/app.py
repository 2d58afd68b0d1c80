"""The FastAPI app: ptcli's own routes (/, /health, /ready, /metrics, /predict/{name}), the Open
Inference Protocol v2 (``v2.py``), OpenAI's for language models (``openai_api.py``), and the
OpenAPI schema of them all at /openapi.json (/docs to read it).

Models load in the background after the server starts, so /health answers at once and /ready
says 503 until every model is loaded and warm. Every error is a JSON object {"error": ...}
(OpenAI's shape on /v1); nothing a client sends can take the server down, show it a traceback
or count as a server error. One JSON log line per request goes to stderr, its id also in the
X-Request-ID response header.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from ptcli.errors import one_line

from . import schema
from .auth import Keys
from .http import MAX_HEADERS
from .requests import ClientGone, RequestError, parse, request_options
from .workers import Hooks, LocalModel, Refused, unavailable

#: ptcli's own routes (the protocols' are in v2.ROUTES and openai_api.ROUTES).
ROUTES = ("/", "/health", "/ready", "/metrics", "/predict", "/predict/{name}", "/openapi.json", "/docs")
#: Routes open without an API key: what a load balancer or Kubernetes probes.
OPEN_ROUTES = ("/health", "/ready", "/v2/health/live", "/v2/health/ready")
#: 499 (nginx's "client closed request"): counted and logged, never sent.
CLIENT_GONE = 499
#: The last event of every stream (ptcli's and OpenAI's).
STREAM_END = "data: [DONE]\n\n"
_REQUEST_ID = re.compile(r"[^A-Za-z0-9._:-]")


@dataclass
class Settings:
    max_batch: int = 16
    max_wait_ms: float = 5.0
    max_queue: int = 256
    max_body_mb: float = 20.0
    timeout_s: float = 30.0
    allow_urls: bool = False
    api_keys: tuple[str, ...] = ()


class State:
    """The server's models by name, its settings and metrics."""

    def __init__(self, models: list, settings: Settings) -> None:
        from .metrics import Metrics

        self.models = {model.name: model for model in models}
        self.settings = settings
        self.metrics = Metrics()
        self.on_load_error: Callable[[str], None] = lambda message: None

    # The single model of a one-model server (the tests and the old names reach it so).
    @property
    def only(self):
        return next(iter(self.models.values())) if len(self.models) == 1 else None

    @property
    def servable(self):
        return getattr(self.only, "servable", None)

    @property
    def load_error(self):
        return getattr(self.only, "load_error", None)

    @property
    def batcher(self):
        return getattr(self.only, "batcher", None)

    def model(self, name: str):
        model = self.models.get(name)
        if model is None:
            raise RequestError(404, f"no model {name!r}; this server has {', '.join(self.models)}")
        return model

    def ready_model(self, name: str):
        """The model named, loaded (else 503, saying why)."""
        model = self.model(name)
        if model.info is None:
            refused = unavailable(model.load_error)
            raise RequestError(refused.status, refused.message, refused.headers)
        return model

    def deadline(self, request: Request) -> float:
        return request.state.arrived + self.settings.timeout_s


def log(record: dict) -> None:
    sys.stderr.write(json.dumps(record) + "\n")
    sys.stderr.flush()


def request_id(header: str | None) -> str:
    """The client's X-Request-ID, kept to 64 safe characters (a log line is not the place for
    a client's 10 KB), else a new one."""
    kept = _REQUEST_ID.sub("", header or "")[:64]
    return kept or uuid.uuid4().hex[:16]


def error_body(path: str, message: str) -> dict:
    if path.startswith("/v1/"):  # OpenAI's clients read error.message
        return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    return {"error": message}


def create_app(models, settings: Settings | None = None):
    """The app over ``models`` (LocalModel or ReplicaPool objects, each named), or over one
    model that ``models()`` loads (a Servable), named "model"."""
    settings = settings or Settings()
    if callable(models):
        models = [LocalModel("model", models, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms)]
    for model in models:
        model.max_queue, model.timeout_s = settings.max_queue, settings.timeout_s
    state = State(models, settings)
    keys = Keys(settings.api_keys)
    for model in models:
        state.metrics.add_model(model.name, model.queue_depth)
        model.hooks = Hooks(on_batch=state.metrics.batch_size.labels(model=model.name).observe,
                            on_drop=state.metrics.dropped.labels(model=model.name).inc, log=log,
                            on_restart=state.metrics.restarts.labels(model=model.name).inc)
        model.on_load_error = lambda message, name=model.name: state.on_load_error(
            message if len(state.models) == 1 else f"model {name}: {message}")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        for model in models:
            await model.start()
        yield
        await asyncio.gather(*(model.stop() for model in models))

    app = FastAPI(title="ptcli serve", version=_version(), lifespan=lifespan, docs_url="/docs", redoc_url=None,
                  description=schema.DESCRIPTION, openapi_tags=schema.TAGS)
    app.state.ptcli = state

    def error(request: Request, status: int, message: str, headers: dict | None = None):
        return JSONResponse(error_body(request.url.path, message), status_code=status, headers=headers)

    @app.middleware("http")
    async def observe(request: Request, call_next):
        ident = request_id(request.headers.get("x-request-id"))
        request.state.arrived = time.monotonic()
        request.state.batch_size = None
        request.state.model = ""
        start = time.perf_counter()
        if len(request.headers.raw) > MAX_HEADERS:
            response = error(request, 431, f"the request has {len(request.headers.raw)} header fields; at most {MAX_HEADERS}")
        elif keys and request.url.path not in OPEN_ROUTES and not keys.allows(request.headers.get("authorization")):
            response = error(request, 401, "missing or wrong API key; send Authorization: Bearer KEY",
                             {"WWW-Authenticate": "Bearer"})
        else:
            try:
                response = await call_next(request)
            except ClientGone:
                response = Response(status_code=CLIENT_GONE)
            except Exception as exc:  # a bug of ours: the client gets a line, the log the cause
                log({"event": "error", "id": ident, "error": one_line(exc)})
                response = error(request, 500, "internal error; see the server's log")
        response.headers["X-Request-ID"] = ident

        def finish(status: int) -> None:
            seconds = time.perf_counter() - start
            route = getattr(request.scope.get("route"), "path", "other")
            state.metrics.observe(route, status, seconds, request.state.model)
            log({"id": ident, "method": request.method, "route": route, "model": request.state.model,
                 "status": status, "latency_ms": round(seconds * 1000, 2), "batch_size": request.state.batch_size})

        if response.headers.get("content-type", "").startswith("text/event-stream"):
            # A stream is logged when it ends: 200 if it ran to its end, 499 if the client left.
            response.body_iterator = _logged_stream(response.body_iterator, lambda done: finish(
                response.status_code if done else CLIENT_GONE))
        else:
            finish(response.status_code)
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        if exc.status_code == 404:
            return error(request, 404, f"no route {request.method} {_short(request.url.path)}; see /docs for the routes")
        return error(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc):
        return error(request, 400, f"bad request: {one_line(exc)}")

    @app.exception_handler(RequestError)
    async def request_error(request, exc: RequestError):
        return error(request, exc.status, exc.message, exc.headers)

    @app.exception_handler(Refused)
    async def refused(request, exc: Refused):
        return error(request, exc.status, exc.message, exc.headers)

    @app.get("/health", tags=["ptcli"], summary="Alive", responses=schema.responses(200, body=schema.STATUS))
    async def health():
        return {"status": "ok"}

    @app.get("/ready", tags=["ptcli"], summary="Every model loaded and warm",
             responses=schema.responses(200, 503, body=schema.READY))
    async def ready(request: Request):
        for name, model in state.models.items():
            if model.info is None:
                refused = unavailable(model.load_error)
                if not _shown_details(request):  # a load error names files: for key holders only
                    refused = unavailable("see the server's log" if model.load_error is not None else None)
                message = refused.message if len(state.models) == 1 else f"model {name}: {refused.message}"
                return JSONResponse({"error": message}, status_code=503, headers=refused.headers)
        return {"status": "ready", "models": {name: model.info.title if _shown_details(request) else "ready"
                                              for name, model in state.models.items()}}

    def _shown_details(request: Request) -> bool:
        """/ready is open to probes; what names files on this machine (a model's title holds its
        checkpoint's path, a load error the file it failed on) goes only to key holders."""
        return not keys or keys.allows(request.headers.get("authorization"))

    @app.get("/metrics", tags=["ptcli"], summary="Prometheus metrics", response_class=Response,
             responses=schema.responses(200, media="text/plain"))
    async def prometheus():
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/", response_class=HTMLResponse, tags=["ptcli"], summary="A page to try the models",
             responses=schema.responses(200, 503, media="text/html"))
    async def index():
        from .page import page

        loaded = {name: model.info for name, model in state.models.items() if model.info is not None}
        if not loaded:
            return JSONResponse({"error": "the model is loading"}, status_code=503, headers={"Retry-After": "1"})
        return HTMLResponse(page(loaded))

    async def predict_with(name: str, request: Request):
        request.state.model = name if name in state.models else ""
        model = state.ready_model(name)
        info = model.info
        deadline = state.deadline(request)
        raw, names, many = await parse(request, info.kind, limit=int(settings.max_body_mb * 1e6),
                                       allow_urls=settings.allow_urls, deadline=deadline, max_items=settings.max_queue)
        if info.streams and not many and _wants_stream(request, raw[0]):
            events = await model.stream(raw[0], deadline=deadline)
            return _sse(event async for event in events)
        want_file = info.media_type is not None and not many and info.media_type in request.headers.get("accept", "")
        outcomes = await model.predict(raw, deadline=deadline, want_file=want_file, options=request_options(request))
        sizes = [outcome.batch_size for outcome in outcomes if outcome.batch_size]
        request.state.batch_size = max(sizes) if sizes else None
        if not many:
            outcome = outcomes[0]
            if outcome.error is not None:
                raise RequestError(outcome.status, outcome.error)
            if outcome.file is not None:  # the file itself, as the client asked
                return Response(outcome.file, media_type=info.media_type)
        rows = [({"input": label} if label else {}) | (jsonable(o.result) if o.error is None else {"error": o.error})
                for label, o in zip(names, outcomes)]
        return rows if many else rows[0]

    @app.post("/predict/{name}", tags=["ptcli"], summary="Predict with the model named",
              openapi_extra=schema.PREDICT_BODY, responses=schema.responses(200, 400, 404, 408, 413, 415, 500, 503, 504,
                                                                           body=schema.RESULT, extra_media=schema.PREDICT_ANSWERS))
    async def predict_named(name: str, request: Request):
        return await predict_with(name, request)

    @app.post("/predict", tags=["ptcli"], summary="Predict (a server of one model)",
              openapi_extra=schema.PREDICT_BODY, responses=schema.responses(200, 400, 404, 408, 413, 415, 500, 503, 504,
                                                                           body=schema.RESULT, extra_media=schema.PREDICT_ANSWERS))
    async def predict(request: Request):
        if state.only is None:
            raise RequestError(404, f"this server has several models; POST to /predict/NAME ({', '.join(state.models)})")
        return await predict_with(state.only.name, request)

    from . import openai_api, v2

    v2.add_routes(app, state)
    openai_api.add_routes(app, state)
    app.openapi = lambda: _openapi(app, state)
    return app


def _openapi(app, state) -> dict:
    """FastAPI's schema, with what only the running server knows: the names its models go by
    (so that a client generator or a fuzzer reaches them), the one version of each, and each
    model's own request and answer bodies (ptcli.serving.model_schemas). Kept once every model
    has loaded; until then it is made anew."""
    from fastapi.openapi.utils import get_openapi

    from .model_schemas import specialize

    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                             tags=app.openapi_tags)
        names = sorted(state.models)
        for route in schema["paths"].values():
            for operation in route.values():
                for parameter in operation.get("parameters", []):
                    if parameter["in"] == "path" and parameter["name"] == "name":
                        parameter["schema"] = {"type": "string", "enum": names, "title": "Name"}
                    elif parameter["in"] == "path" and parameter["name"] == "version":
                        parameter["schema"] = {"type": "string", "enum": ["1"], "title": "Version"}
        infos = {name: model.info for name, model in state.models.items()}
        schema = specialize(schema, infos, state.settings.max_queue)
        if all(info is not None for info in infos.values()):
            app.openapi_schema = schema
        return schema
    return app.openapi_schema


def _version() -> str:
    from ptcli import __version__

    return __version__


def _short(path: str) -> str:
    return path if len(path) <= 80 else path[:77] + "..."


def jsonable(result: dict) -> dict:
    """A result with its files (bytes) as base64 strings."""
    import base64

    return {key: base64.b64encode(value).decode() if isinstance(value, bytes) else value for key, value in result.items()}


def _wants_stream(request: Request, item) -> bool:
    return (isinstance(item, dict) and item.get("stream") is True) or \
        "text/event-stream" in request.headers.get("accept", "")


async def _logged_stream(chunks, finish):
    """``chunks``, then ``finish(True)`` if the last was the stream's end, else ``finish(False)``:
    a stream whose client left is cancelled inside the route, and this copy of it (the
    middleware's) just stops, without the end."""
    last = b""
    try:
        async for chunk in chunks:
            last = chunk
            yield chunk
    finally:
        finish((last.encode() if isinstance(last, str) else last).endswith(STREAM_END.encode()))


def _sse(events):
    """Server-sent events: each event as ``data: {...}``, then ``data: [DONE]``."""
    from fastapi.responses import StreamingResponse

    async def lines():
        async for event in events:
            yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
        yield STREAM_END

    return StreamingResponse(lines(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
