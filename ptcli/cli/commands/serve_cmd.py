"""`ptcli serve`: a recipe's model as an HTTP prediction server (see ptcli.serving)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptcli.errors import PtcliError, UsageError
from ptcli.cli.options import DEVICE_HELP


def _env(name: str) -> str:
    return f"PTCLI_SERVE_{name}"


def _port_free(host: str, port: int) -> None:
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: {exc.strerror}") from exc
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port") from exc


def serve(
    checkpoint: Annotated[Path | None, typer.Argument(metavar="CKPT", show_default=False, envvar=_env("CHECKPOINT"),
                          help="A ptcli checkpoint or export (.safetensors, .onnx, .pt2, .pt); or give --recipe and --model, or --config.")] = None,
    recipe: Annotated[str | None, typer.Option("--recipe", "-r", metavar="R", envvar=_env("RECIPE"), show_default=False,
                      help="The recipe whose --model to serve (any with a predictor: classify-image, classify-text, classify-audio, detect, super-resolve, generate-text, debug, adversarial).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", metavar="NAME", envvar=_env("MODEL"), show_default=False,
                     help="A model of --recipe [default: the recipe's default].")] = None,
    weights: Annotated[Path | None, typer.Option(metavar="FILE", envvar=_env("WEIGHTS"), help="Local weights for --model.")] = None,
    options: Annotated[list[str] | None, typer.Option("--option", "-O", metavar="NAME=VALUE", envvar=_env("OPTIONS"),
                       show_default=False, help="One of the recipe's options for the model, as its command's flag would set it (--option threshold=0.6; repeatable); with --config, each model's options: instead.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", metavar="FILE.yaml", envvar=_env("CONFIG"), show_default=False,
                      help="Several models in one server: models: [{name, recipe, model | weights | checkpoint, max_batch, max_wait_ms, device, replicas, options}, ...].")] = None,
    host: Annotated[str, typer.Option(envvar=_env("HOST"), help="Address to listen on (0.0.0.0 in a container).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, envvar=_env("PORT"), help="Port to listen on.")] = 8000,
    max_batch: Annotated[int, typer.Option(min=1, metavar="N", envvar=_env("MAX_BATCH"), help="Most inputs per forward pass.")] = 16,
    max_wait_ms: Annotated[float, typer.Option(min=0, metavar="MS", envvar=_env("MAX_WAIT_MS"), help="Longest wait for a batch to fill after its first input.")] = 5.0,
    max_queue: Annotated[int, typer.Option(min=1, metavar="N", envvar=_env("MAX_QUEUE"), help="Inputs that may wait, per model; beyond, 503 with Retry-After.")] = 256,
    max_body_mb: Annotated[float, typer.Option(min=0.001, metavar="MB", envvar=_env("MAX_BODY_MB"), help="Largest request body; beyond, 413.")] = 20.0,
    timeout_s: Annotated[float, typer.Option(min=0.001, metavar="S", envvar=_env("TIMEOUT_S"), help="Longest time for a request, body included: a body slower than this is 408, a result 504 (and a queued input past it is dropped unrun).")] = 30.0,
    decode_budget_mb: Annotated[float, typer.Option(min=1, metavar="MB", envvar=_env("DECODE_BUDGET_MB"), help="Memory that decoding uploads may hold at once, across requests, by the size their headers announce (a 86 KB PNG can decode to 420 MB); the rest wait their turn. Per process: each replica has its own.")] = 768.0,
    header_timeout_s: Annotated[float, typer.Option(min=0.01, metavar="S", envvar=_env("HEADER_TIMEOUT_S"), help="Longest time a client may take to send a request's headers, from its connection or its last answer; beyond, 408 and the connection closed (slow clients cannot hold connections open).")] = 10.0,
    replicas: Annotated[int, typer.Option(min=1, max=64, metavar="N", envvar=_env("REPLICAS"), help="Model processes per device, each with its own batcher, behind the one port (1: the model runs in the server's process). A replica that dies is restarted; its requests in flight get 503.")] = 1,
    api_keys: Annotated[list[str] | None, typer.Option("--api-key", metavar="KEY", envvar=_env("API_KEYS"), show_default=False,
                        help="Require Authorization: Bearer KEY on every route but /health, /ready and /v2/health/* (repeatable; PTCLI_SERVE_API_KEYS takes a comma-separated list).")] = None,
    allow_urls: Annotated[bool, typer.Option("--allow-urls", envvar=_env("ALLOW_URLS"), help="Accept {\"image_url\": ...}: the server fetches it (off: a server should not fetch what clients name).")] = False,
    device: Annotated[str, typer.Option("--device", metavar="DEVICE", envvar=_env("DEVICE"), help=DEVICE_HELP + " A comma-separated list shares --replicas out over devices.")] = "auto",
    json_output: Annotated[bool, typer.Option("--json", envvar=_env("JSON"), help="Errors before serving as a JSON object on stdout (the server's log is JSON lines on stderr in any case).")] = False,
) -> None:
    """Serve models over HTTP (book ch. 8, on FastAPI and uvicorn). ptcli's routes: POST
    /predict/NAME (or /predict with one model) with a file (multipart upload, raw bytes with its
    Content-Type, or JSON {"image": BASE64}) or, for text, JSON {"text": ...} or a list
    (generate-text: {"prompt": ..., "max_new_tokens": N, ...}, streamed as server-sent events with
    "stream": true); the answer is the command's --json object (an image result: the PNG itself
    with Accept: image/png). The Open Inference Protocol v2 (KServe, Triton) at /v2, and
    OpenAI's /v1/completions and /v1/chat/completions for language models. Concurrent requests
    are batched per model (up to --max-batch, waiting at most --max-wait-ms). GET /health
    (alive), /ready (every model loaded and warm; 503 before), /metrics (Prometheus), /docs (the
    OpenAPI schema), / (a page to try it). Every option can come from a PTCLI_SERVE_<OPTION>
    environment variable (PTCLI_SERVE_PORT=9000). SIGTERM lets requests in flight finish, then
    exits 0 (Ctrl-C: the same, then exit 130)."""
    import os
    import signal

    from ptcli.output import warn
    from ptcli.serving.auth import parse_keys
    from ptcli.serving.config import ModelConfig, read_config, settle

    if config is not None:
        if checkpoint is not None or recipe is not None or model is not None or weights is not None or options:
            raise UsageError("--config names the models and their options; drop CKPT, --recipe, --model, --weights and --option")
        entries, source = read_config(config).models, str(config)
    else:
        entries, source = [ModelConfig(recipe=recipe, model=model, weights=weights, checkpoint=checkpoint,
                                       options=_options(options))], None
    specs = settle(entries, max_batch=max_batch, max_wait_ms=max_wait_ms, device=device, replicas=replicas, source=source)
    # Typer splits PTCLI_SERVE_API_KEYS on spaces into --api-key, and drops it when it is blank:
    # the variable is read here as written, so that an empty entry is refused, never ignored.
    environment = os.environ.get(_env("API_KEYS"))
    from_environment = environment is not None and (not api_keys or list(api_keys) == environment.split())
    keys = parse_keys(None, environment) if from_environment else parse_keys(api_keys, None)
    workers = [_worker(spec, max_queue=max_queue, timeout_s=timeout_s) for spec in specs]
    _port_free(host, port)

    import uvicorn

    from ptcli.serving.app import Settings, create_app, log
    from ptcli.serving.http import LOG_CONFIG, guarded_protocol

    settings = Settings(max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue, max_body_mb=max_body_mb,
                        timeout_s=timeout_s, allow_urls=allow_urls, api_keys=keys)
    from ptcli.serving import budget

    budget.configure(int(decode_budget_mb * 2**20))
    app = create_app(workers, settings)
    config_ = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                             http=guarded_protocol(header_timeout_s), log_config=LOG_CONFIG,
                             timeout_graceful_shutdown=max(1, int(timeout_s)))
    server = uvicorn.Server(config_)
    failure: list[str] = []

    def load_failed(message: str) -> None:
        failure.append(message)
        server.should_exit = True

    app.state.ptcli.on_load_error = load_failed
    if allow_urls:
        warn("--allow-urls: the server fetches any image_url a client sends")
    if not keys and host not in ("127.0.0.1", "localhost", "::1"):
        warn(f"serving on {host} without --api-key: anyone who can reach it may use it")
    log({"event": "serving", "url": f"http://{host}:{port}", "api_keys": len(keys), "pid": os.getpid(),
         "models": [{"name": spec.name, "recipe": spec.recipe, "devices": spec.devices, "replicas": spec.replicas,
                     "max_batch": spec.max_batch, "max_wait_ms": spec.max_wait_ms, "options": spec.options}
                    for spec in specs]})
    # uvicorn drains on SIGINT and SIGTERM, then raises the signal again under the handler it
    # found: for SIGTERM a no-op, so that a drained shutdown exits 0; for Ctrl-C Python's own
    # (exit 130, "interrupted").
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()
    if failure:
        raise PtcliError(f"the model failed to load: {failure[0]}")


def _options(pairs: list[str] | None) -> dict | None:
    """--option NAME=VALUE... as a mapping (each value checked later against the recipe's option)."""
    if not pairs:
        return None
    found = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise UsageError(f"--option {pair!r}: give NAME=VALUE (--option threshold=0.6)")
        found[name.strip()] = value
    return found


def _worker(spec, *, max_queue: int, timeout_s: float):
    """What runs ``spec``'s model, with its settings: in this process, or in replica processes."""
    from ptcli.devices import resolve_device
    from ptcli.plugins import get_plugins
    from ptcli.serving.workers import LocalModel

    recipe = get_plugins().recipe(spec.recipe)
    devices = [resolve_device(name, recipe.devices.devices) for name in spec.devices]
    if spec.replicas == 1 and len(devices) == 1:
        from ptcli.serving.spec import load_servable

        target = devices[0]
        return LocalModel(spec.name, lambda: load_servable(recipe, checkpoint=spec.checkpoint, model=spec.model,
                                                           weights=spec.weights, device=target, options=spec.options),
                          max_batch=spec.max_batch, max_wait_ms=spec.max_wait_ms, max_queue=max_queue, timeout_s=timeout_s)
    from ptcli.serving.replicas import ReplicaPool

    return ReplicaPool(spec, [str(d) for d in devices], max_queue=max_queue, timeout_s=timeout_s)
