"""What every request goes through: its id, the header count, the API key, one JSON log line
and its metrics (a stream's when it ends: 200, or 499 if the client left), and every error as
one JSON line: no client sees a traceback, nothing a client sends counts as a server error."""

from __future__ import annotations

import time

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from ptcli.errors import one_line

from .http import MAX_HEADERS
from .requests import ClientGone, RequestError
from .state import CLIENT_GONE, OPEN_PREFIXES, OPEN_ROUTES, STREAM_END, error_body, log, request_id
from .workers import Refused


def error(request: Request, status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(request.url.path, message), status_code=status, headers=headers)


def _open(path: str) -> bool:
    """A route that needs no key: the probes, the pages and Swagger UI's files (no way up and out)."""
    return path in OPEN_ROUTES or (path.startswith(OPEN_PREFIXES) and ".." not in path.split("/"))


def add_middleware(app, state, keys) -> None:
    @app.middleware("http")
    async def observe(request: Request, call_next):
        ident = request_id(request.headers.get("x-request-id"))
        request.state.arrived = time.monotonic()
        request.state.batch_size = None
        request.state.model = ""
        start = time.perf_counter()
        if len(request.headers.raw) > MAX_HEADERS:
            response = error(request, 431, f"the request has {len(request.headers.raw)} header fields; at most {MAX_HEADERS}")
        elif keys and not _open(request.url.path) and not keys.allows(request.headers.get("authorization")):
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


def add_error_handlers(app) -> None:
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


def _short(path: str) -> str:
    return path if len(path) <= 80 else path[:77] + "..."


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
