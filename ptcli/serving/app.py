"""The FastAPI app: /health, /ready, /predict, /metrics and the page at /.

The model loads in a thread after the server starts, so /health answers at once and /ready
says 503 until the model is loaded and warm. Every error is a JSON object {"error": ...};
nothing a client sends can take the server down or show it a traceback. One JSON log line
per request goes to stderr, its id also in the X-Request-ID response header.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ptcli.errors import InputError, one_line

from .batcher import Batcher, QueueFull
from .requests import RequestError, parse
from .spec import Servable

ROUTES = ("/", "/health", "/ready", "/predict", "/metrics")


@dataclass
class Settings:
    max_batch: int = 16
    max_wait_ms: float = 5.0
    max_queue: int = 256
    max_body_mb: float = 20.0
    timeout_s: float = 30.0
    allow_urls: bool = False


class State:
    def __init__(self) -> None:
        self.servable: Servable | None = None
        self.load_error: str | None = None
        self.batcher: Batcher | None = None
        self.on_load_error: Callable[[str], None] = lambda message: None


def log(record: dict) -> None:
    sys.stderr.write(json.dumps(record) + "\n")
    sys.stderr.flush()


def create_app(load: Callable[[], Servable], settings: Settings | None = None):
    """The app; ``load()`` builds the Servable (in a thread, once the server runs)."""
    from .metrics import Metrics
    from .page import page

    settings = settings or Settings()
    state = State()
    metrics = Metrics(lambda: len(state.batcher.pending) if state.batcher else 0)

    def load_and_warm() -> Servable:
        servable = load()
        if servable.warmup is not None:
            servable.predict([servable.warmup])
        return servable

    async def loading() -> None:
        try:
            state.servable = await state.batcher.on_model_thread(load_and_warm)
            state.batcher.predict = state.servable.predict
            log({"event": "ready", "model": state.servable.title})
        except Exception as exc:  # the model cannot load: say so once, and on /ready
            state.load_error = one_line(exc)
            log({"event": "load_failed", "error": state.load_error})
            state.on_load_error(state.load_error)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state.batcher = Batcher(lambda items: [], max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                                max_queue=settings.max_queue, on_batch=metrics.batch_size.observe)
        state.batcher.start()
        task = asyncio.get_running_loop().create_task(loading())
        yield
        task.cancel()
        await state.batcher.stop()

    app = FastAPI(title="ptcli serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ptcli = state

    def error(status: int, message: str, headers: dict | None = None):
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.middleware("http")
    async def observe(request: Request, call_next):
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        request.state.batch_size = None
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as exc:  # a bug of ours: the client gets a line, the log the cause
            log({"event": "error", "id": request_id, "error": one_line(exc)})
            response = error(500, "internal error; see the server's log")
        seconds = time.perf_counter() - start
        route = request.url.path if request.url.path in ROUTES else "other"
        response.headers["X-Request-ID"] = request_id
        metrics.observe(route, response.status_code, seconds)
        log({"id": request_id, "method": request.method, "route": route, "status": response.status_code,
             "latency_ms": round(seconds * 1000, 2), "batch_size": request.state.batch_size})
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail) if exc.status_code != 404 else f"no route {request.url.path}; "
                     f"the routes are {', '.join(ROUTES)}", getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc):
        return error(400, f"bad request: {one_line(exc)}")

    @app.exception_handler(RequestError)
    async def request_error(request, exc: RequestError):
        return error(exc.status, exc.message, exc.headers)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        if state.servable is not None:
            return {"status": "ready", "model": state.servable.title}
        if state.load_error is not None:
            return error(503, f"the model failed to load: {state.load_error}")
        return error(503, "the model is loading", {"Retry-After": "1"})

    @app.get("/metrics")
    async def prometheus():
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/", response_class=HTMLResponse)
    async def index():
        if state.servable is None:
            return error(503, "the model is loading", {"Retry-After": "1"})
        return HTMLResponse(page(state.servable.kind, state.servable.title))

    @app.post("/predict")
    async def predict(request: Request):
        servable = state.servable
        if servable is None:
            raise RequestError(503, state.load_error and f"the model failed to load: {state.load_error}" or "the model is loading",
                               {"Retry-After": "1"})
        raw, names, many = await parse(request, servable.kind, limit=int(settings.max_body_mb * 1e6), allow_urls=settings.allow_urls)
        try:
            items = [await run_in_threadpool(servable.decode, item) for item in raw]
        except InputError as exc:
            raise RequestError(400, str(exc)) from exc
        predictor = servable.predictor
        if predictor is not None and predictor.streams and not many and _wants_stream(request, raw[0]):
            return _stream(predictor, items[0], state.batcher)
        try:
            futures = [state.batcher.submit(item) for item in items]
        except QueueFull:
            raise RequestError(503, f"the queue is full ({settings.max_queue} inputs waiting); retry shortly",
                               {"Retry-After": "1"}) from None
        try:
            done = await asyncio.wait_for(asyncio.gather(*futures), settings.timeout_s)
        except TimeoutError:
            for future in futures:
                future.cancel()
            raise RequestError(504, f"no result within --timeout-s {settings.timeout_s:g} s") from None
        except InputError as exc:
            raise RequestError(400, str(exc)) from exc
        except Exception as exc:  # the model failed on this batch; the server goes on
            raise RequestError(500, f"prediction failed: {one_line(exc)}") from exc
        request.state.batch_size = max(size for _, size in done)
        media = getattr(predictor, "media_type", None)
        if media is not None and not many and media in request.headers.get("accept", ""):
            data = predictor.encode(done[0][0])
            if data is not None:  # the file itself, as the client asked
                return Response(data, media_type=media)
        results = [({"input": name} if name else {}) | _jsonable(result) for name, (result, _) in zip(names, done)]
        return results if many else results[0]

    return app


def _jsonable(result: dict) -> dict:
    """A result with its files (bytes) as base64 strings."""
    import base64

    return {key: base64.b64encode(value).decode() if isinstance(value, bytes) else value for key, value in result.items()}


def _wants_stream(request: Request, item) -> bool:
    return (isinstance(item, dict) and item.get("stream") is True) or \
        "text/event-stream" in request.headers.get("accept", "")


def _stream(predictor, sample, batcher: Batcher):
    """Server-sent events: ``data: {"text": piece}`` as each piece is made, then the whole
    result as ``data: {"result": {...}}`` (or ``data: {"error": ...}``) and ``data: [DONE]``.
    The generation runs on the model thread, between batches, like any other prediction."""
    from fastapi.responses import StreamingResponse

    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue = asyncio.Queue()

    def run() -> None:
        try:
            final = {"result": predictor.stream(sample, lambda text: loop.call_soon_threadsafe(pieces.put_nowait, {"text": text}))}
        except Exception as exc:  # the stream has begun (200): the error goes in it, as an event
            final = {"error": one_line(exc) if not isinstance(exc, InputError) else str(exc)}
        loop.call_soon_threadsafe(pieces.put_nowait, final)

    async def events():
        job = asyncio.ensure_future(batcher.on_model_thread(run))
        try:
            while True:
                event = await pieces.get()
                yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
                if "text" not in event:
                    break
            yield "data: [DONE]\n\n"
        finally:
            await job

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
