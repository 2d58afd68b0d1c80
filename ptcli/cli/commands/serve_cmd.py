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
                          help="A ptcli checkpoint or export (.safetensors, .onnx, .pt2, .pt); or give --recipe and --model.")] = None,
    recipe: Annotated[str | None, typer.Option("--recipe", "-r", metavar="R", envvar=_env("RECIPE"), show_default=False,
                      help="The recipe whose --model to serve (any with a predictor: classify-image, classify-text, classify-audio, detect, super-resolve, generate-text, debug, adversarial).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", metavar="NAME", envvar=_env("MODEL"), show_default=False,
                     help="A model of --recipe [default: the recipe's default].")] = None,
    weights: Annotated[Path | None, typer.Option(metavar="FILE", envvar=_env("WEIGHTS"), help="Local weights for --model.")] = None,
    host: Annotated[str, typer.Option(envvar=_env("HOST"), help="Address to listen on (0.0.0.0 in a container).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, envvar=_env("PORT"), help="Port to listen on.")] = 8000,
    max_batch: Annotated[int, typer.Option(min=1, metavar="N", envvar=_env("MAX_BATCH"), help="Most inputs per forward pass.")] = 16,
    max_wait_ms: Annotated[float, typer.Option(min=0, metavar="MS", envvar=_env("MAX_WAIT_MS"), help="Longest wait for a batch to fill after its first input.")] = 5.0,
    max_queue: Annotated[int, typer.Option(min=1, metavar="N", envvar=_env("MAX_QUEUE"), help="Inputs that may wait; beyond, 503 with Retry-After.")] = 256,
    max_body_mb: Annotated[float, typer.Option(min=0.001, metavar="MB", envvar=_env("MAX_BODY_MB"), help="Largest request body; beyond, 413.")] = 20.0,
    timeout_s: Annotated[float, typer.Option(min=0.001, metavar="S", envvar=_env("TIMEOUT_S"), help="Longest time for a result; beyond, 504.")] = 30.0,
    allow_urls: Annotated[bool, typer.Option("--allow-urls", envvar=_env("ALLOW_URLS"), help="Accept {\"image_url\": ...}: the server fetches it (off: a server should not fetch what clients name).")] = False,
    device: Annotated[str, typer.Option("--device", metavar="DEVICE", envvar=_env("DEVICE"), help=DEVICE_HELP)] = "auto",
) -> None:
    """Serve a model over HTTP (book ch. 8, on FastAPI and uvicorn): POST /predict with a file
    (multipart upload, or raw bytes with its Content-Type, or JSON {"image": BASE64}) or, for
    text, JSON {"text": ...} or a list (generate-text: {"prompt": ..., "max_new_tokens": N, ...},
    streamed as server-sent events with "stream": true); the answer is the command's --json
    object (an image result: the PNG itself with Accept: image/png). Concurrent
    requests are batched (up to --max-batch, waiting at most --max-wait-ms). GET /health
    (alive), /ready (model loaded and warm; 503 before), /metrics (Prometheus), / (a page to
    try it). Every option can come from a PTCLI_SERVE_<OPTION> environment variable
    (PTCLI_SERVE_PORT=9000). SIGTERM lets requests in flight finish, then exits 0 (Ctrl-C: the
    same, then exit 130)."""
    import signal

    from ptcli.devices import resolve_device
    from ptcli.models.loading import check_request
    from ptcli.plugins import requested_recipe
    from ptcli.output import warn
    from ptcli.serving.spec import load_servable

    chosen = requested_recipe(checkpoint, recipe, model, weights)
    if chosen.predictor is None and chosen.serve is None:
        raise UsageError(f"recipe {chosen.name} cannot be served (it declares no predictor); see `ptcli plugins`")
    check_request(chosen, checkpoint=checkpoint, model=model, weights=weights, device=device)
    target = resolve_device(device, chosen.devices.devices)
    _port_free(host, port)

    import uvicorn

    from ptcli.serving.app import Settings, create_app, log

    settings = Settings(max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue, max_body_mb=max_body_mb,
                        timeout_s=timeout_s, allow_urls=allow_urls)
    app = create_app(lambda: load_servable(chosen, checkpoint=checkpoint, model=model, weights=weights, device=target),
                     settings)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=max(1, int(timeout_s)))
    server = uvicorn.Server(config)
    failure: list[str] = []

    def load_failed(message: str) -> None:
        failure.append(message)
        server.should_exit = True

    app.state.ptcli.on_load_error = load_failed
    if allow_urls:
        warn("--allow-urls: the server fetches any image_url a client sends")
    log({"event": "serving", "recipe": chosen.name, "url": f"http://{host}:{port}", "device": str(target),
         "max_batch": max_batch, "max_wait_ms": max_wait_ms})
    # uvicorn drains on SIGINT and SIGTERM, then raises the signal again under the handler it
    # found: for SIGTERM a no-op, so that a drained shutdown exits 0; for Ctrl-C Python's own
    # (exit 130, "interrupted").
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()
    if failure:
        raise PtcliError(f"the model failed to load: {failure[0]}")
