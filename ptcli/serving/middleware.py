"""What every request goes through: its id, the header count, the API key, one JSON log line
and its metrics (a stream's when it ends: 200, or 499 if the client left), and every error as
one JSON line: no client sees a traceback, nothing a client sends counts as a server error."""

from __future__ import annotations

import time

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

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
    app.add_middleware(Observe, state=state, keys=keys)


class Observe:
    """Every HTTP request: its id, the header count, the API key, its log line and metrics. A
    plain ASGI middleware: starlette's BaseHTTPMiddleware (``@app.middleware``) ran each request
    through a task group and memory streams, a tenth of the event loop's time per request at 32
    clients (py-spy, bench/serve_peers.py), time the model's thread waited for the GIL."""

    def __init__(self, app, state, keys) -> None:
        self.app, self.state, self.keys = app, state, keys

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        ident = request_id(_header(headers, b"x-request-id"))
        scope.setdefault("state", {}).update(arrived=time.monotonic(), batch_size=None, model="")
        start = time.perf_counter()
        sent = {"status": None, "stream": False, "last": b""}

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"x-request-id", ident.encode())]}
                sent["status"] = message["status"]
                sent["stream"] = (_header(message["headers"], b"content-type") or "").startswith("text/event-stream")
            elif message["type"] == "http.response.body" and message.get("body"):
                sent["last"] = message["body"]
            await send(message)

        path = scope["path"]
        if len(headers) > MAX_HEADERS:
            await _error(path, 431, f"the request has {len(headers)} header fields; at most {MAX_HEADERS}")(scope, receive, send_with_id)
        elif self.keys and not _open(path) and not self.keys.allows(_header(headers, b"authorization")):
            await _error(path, 401, "missing or wrong API key; send Authorization: Bearer KEY",
                         {"WWW-Authenticate": "Bearer"})(scope, receive, send_with_id)
        else:
            try:
                await self.app(scope, receive, send_with_id)
            except (ClientGone, ClientDisconnect):
                if sent["status"] is None:
                    await Response(status_code=CLIENT_GONE)(scope, receive, send_with_id)
            except Exception as exc:  # a bug of ours: the client gets a line, the log the cause
                log({"event": "error", "id": ident, "error": one_line(exc)})
                if sent["status"] is None:
                    await _error(path, 500, "internal error; see the server's log")(scope, receive, send_with_id)
            finally:  # cancelled too (the connection lost mid-stream): the request is still logged
                self._finish(scope, ident, sent, time.perf_counter() - start)
            return
        self._finish(scope, ident, sent, time.perf_counter() - start)

    def _finish(self, scope, ident: str, sent: dict, seconds: float) -> None:
        status = sent["status"] or 500
        if sent["stream"]:  # logged as it ended: 200 if it ran to its end, 499 if the client left
            status = status if sent["last"].endswith(STREAM_END.encode()) else CLIENT_GONE
        route = getattr(scope.get("route"), "path", "other")
        extra = scope["state"]
        self.state.metrics.observe(route, status, seconds, extra["model"])
        log({"id": ident, "method": scope["method"], "route": route, "model": extra["model"], "status": status,
             "latency_ms": round(seconds * 1000, 2), "batch_size": extra["batch_size"]})


def _header(headers, name: bytes) -> str | None:
    """A header's value from an ASGI scope's or message's list (names are lower case there)."""
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _error(path: str, status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(path, message), status_code=status, headers=headers)


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
