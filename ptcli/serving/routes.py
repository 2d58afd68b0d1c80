"""ptcli's own routes: / (a page to try the models), /health, /ready, /metrics and
/predict/{name} (/predict on a server of one model), whose answers are the commands' --json
objects, a request's options (ptcli.inference.options) checked by its model."""

from __future__ import annotations

import json
import time

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from . import schema
from .requests import RequestError, parse, request_options
from .state import STREAM_END, jsonable
from .workers import unavailable

#: ptcli's own routes (the protocols' are in v2.ROUTES and openai_api.ROUTES).
ROUTES = ("/", "/health", "/ready", "/metrics", "/models", "/predict", "/predict/{name}", "/openapi.json", "/docs")


def add_routes(app, state, keys) -> None:
    settings = state.settings

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

        if keys:  # open to a browser, which asks for the key and then reads /models with it
            return HTMLResponse(page(None, keyed=True))
        loaded = _loaded()
        if not loaded:
            return JSONResponse({"error": "the model is loading"}, status_code=503, headers={"Retry-After": "1"})
        return HTMLResponse(page(loaded))

    def _loaded() -> dict:
        return {name: model.info for name, model in state.models.items() if model.info is not None}

    @app.get("/models", tags=["ptcli"], summary="The models served: name, kind and title of each loaded one",
             responses=schema.responses(200, 401, 503, body={"type": "object"}))
    async def models():
        from .page import described

        loaded = _loaded()
        if not loaded:
            return JSONResponse({"error": "the model is loading"}, status_code=503, headers={"Retry-After": "1"})
        return described(loaded)

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
            if outcome.file is not None:  # the file itself, as the client asked (encoded beside the model)
                return Response(outcome.file, media_type=info.media_type)
        started = time.perf_counter()
        rows = [({"input": label} if label else {}) | (jsonable(o.result) if o.error is None else {"error": o.error})
                for label, o in zip(names, outcomes)]
        body = JSONResponse(rows if many else rows[0])
        state.metrics.observe_stages(model.name, [("encode", time.perf_counter() - started)])
        return body

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


def _wants_stream(request: Request, item) -> bool:
    return (isinstance(item, dict) and item.get("stream") is True) or \
        "text/event-stream" in request.headers.get("accept", "")


def _sse(events):
    """Server-sent events: each event as ``data: {...}``, then ``data: [DONE]``."""
    from fastapi.responses import StreamingResponse

    async def lines():
        async for event in events:
            yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
        yield STREAM_END

    return StreamingResponse(lines(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
