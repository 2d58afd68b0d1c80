"""Options that many commands share, declared once so that they read the same everywhere."""

from pathlib import Path
from typing import Annotated

import typer

from ptcli.devices import DEVICE_HELP

JsonOption = Annotated[bool, typer.Option("--json", help="Machine output: JSON on stdout, errors included.")]
DeviceOption = Annotated[str, typer.Option("--device", metavar="DEVICE", help=DEVICE_HELP)]
TimingsOption = Annotated[bool, typer.Option("--timings", help=(
    "Say where the run's time went, from the process's start: start-up, model load, decode, preprocess, forward, "
    "postprocess, encode and writing, which add up to the whole (stderr; with --json a last {\"timings\": ...} line)."))]
TrustRemoteCodeOption = Annotated[bool, typer.Option(
    "--trust-remote-code", help="Let a Hugging Face model folder run its own Python code (auto_map); off, such a "
    "model is refused. Read that code first.")]


def paths_argument(what: str = "Image files, folders (searched recursively) or glob patterns."):
    """PATH...: the inputs of a command that reads files."""
    return Annotated[list[str] | None, typer.Argument(help=what, show_default=False, metavar="PATH")]


def model_option(help: str, metavar: str = "NAME"):
    """--model/-m: a model of the recipe's registry (the recipe says which in ``help``)."""
    return Annotated[str | None, typer.Option("--model", "-m", metavar=metavar, help=help, show_default=False)]


def weights_option(help: str = "Local weights file (.safetensors, .pt, .pth) for --model."):
    return Annotated[Path | None, typer.Option(metavar="FILE", help=help)]


def checkpoint_option(help: str = "A ptcli checkpoint (NAME.safetensors with its NAME.json sidecar) or export."):
    return Annotated[Path | None, typer.Option(metavar="CKPT", help=help)]


def batch_size_option(what: str = "Inputs per forward pass."):
    return Annotated[int, typer.Option(min=1, metavar="N", help=what)]


WorkersOption = Annotated[int | None, typer.Option(
    min=0, metavar="N", help="Decoding processes [default: 0 for one batch, else up to 4]; with --engine ray, "
    "Ray tasks that read and decode the inputs apart from the model.")]
ListModelsOption = Annotated[bool, typer.Option("--list-models", help="List model names and exit.")]


def list_models(recipe, as_json: bool, describe: bool = False) -> None:
    """``--list-models``: the recipe's model names, one a line (``describe``: with what each
    is), or a JSON object each with its description."""
    from ptcli.output import emit, emit_json

    from ptcli.errors import UsageError

    registry = recipe.model_registry
    for name in registry.names():
        try:
            description = registry.get(name).description
        except UsageError:  # a family's placeholder ("timm/<name>")
            description = ""
        if as_json:
            emit_json({"name": name, "description": description})
        else:
            emit(f"{name:<36} {description}" if describe else name)


VidStrideOption = Annotated[int, typer.Option(
    "--vid-stride", min=1, metavar="N", help="Videos: every N-th frame (a written video keeps time at fps/N).")]
StartOption = Annotated[float | None, typer.Option(
    min=0.0, metavar="SECONDS", help="Videos: start this far in.", show_default=False)]
EndOption = Annotated[float | None, typer.Option(
    min=0.0, metavar="SECONDS", help="Videos: stop here (the frame at END is not read).", show_default=False)]


DtypeOption = Annotated[str, typer.Option(
    "--dtype", metavar="fp32|bf16", help="Compute precision: bf16 runs matrix products and convolutions in bfloat16 "
    "(torch.autocast) where the device has bf16 units (CUDA GPUs; CPUs with AVX-512 BF16 or AMX).")]
