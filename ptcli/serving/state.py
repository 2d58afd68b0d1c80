"""What the server's parts share: its settings, its models by name and metrics (State), and
how every answer and log line is shaped (one JSON line a request on stderr, errors as
{"error": ...}, OpenAI's shape on /v1, files in JSON as base64)."""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from .requests import RequestError
from .workers import unavailable

#: Routes open without an API key: what a load balancer or Kubernetes probes.
OPEN_ROUTES = ("/health", "/ready", "/v2/health/live", "/v2/health/ready",
               "/", "/docs")  # the pages: code only; they ask for the key and send it (ptcli.serving.browser)
#: Open too: Swagger UI's own files (ptcli.serving.browser.ASSETS).
OPEN_PREFIXES = ("/docs/assets/",)
#: 499 (nginx's "client closed request"): counted and logged, never sent.
CLIENT_GONE = 499
#: The last event of every stream (ptcli's and OpenAI's).
STREAM_END = "data: [DONE]\n\n"
_REQUEST_ID = re.compile(r"[^A-Za-z0-9._:-]")
_IDS = random.Random()  # seeded from the system once


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
    kept = _REQUEST_ID.sub("", header or "")[:64] if header else ""
    # Not uuid4: an id needs to be unique in a log, not secret, and os.urandom on every
    # request was a fifteenth of the event loop's time at 32 clients.
    return kept or f"{_IDS.getrandbits(64):016x}"


def error_body(path: str, message: str) -> dict:
    if path.startswith("/v1/"):  # OpenAI's clients read error.message
        return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    return {"error": message}


def server_version() -> str:
    from ptcli import __version__

    return __version__


def jsonable(result: dict) -> dict:
    """A result with its files (bytes) as base64 strings."""
    import base64

    return {key: base64.b64encode(value).decode() if isinstance(value, bytes) else value for key, value in result.items()}
