"""The hello command. torch is imported inside functions, so `ptcli --help` stays fast.

It uses the core's helpers as a real recipe does: check_request (mistakes answered before
torch loads), load_model (--model or --checkpoint), run_batched (batches, devices, per-input
metadata) and emit_results (human or --json lines, per-input errors, exit 1 if any failed)."""

from pathlib import Path
from typing import Annotated

import typer

from ptcli.cli.options import DeviceOption, JsonOption
from ptcli.plugins.recipe import ModelRegistry, ModelSpec

from . import RECIPE


def build_tiny(num_classes: int = 1):
    import torch

    torch.manual_seed(0)
    return torch.nn.Linear(4, num_classes)


def make_registry() -> ModelRegistry:
    registry = ModelRegistry("hello")
    registry.add(ModelSpec(name="tiny", build=build_tiny, description="A 4-to-1 linear layer"))
    return registry


def _untrained(name: str, _weights):
    """--model NAME: the tiny model has no published weights, so it runs as built (seeded)."""
    from ptcli.models.loading import LoadedModel

    return LoadedModel(RECIPE.model_registry.get(name).build(), source=name)


class Greet:
    """load: one name to the model's input, with the name itself as metadata for postprocess."""

    def __call__(self, name: str):
        import torch

        from ptcli.inference.batching import Sample
        from ptcli.errors import InputError

        if not name.strip():
            raise InputError("an empty name: nobody to greet")
        return Sample(torch.ones(4), meta=name)


def hello(
    names: Annotated[list[str] | None, typer.Argument(metavar="NAME", help="Who to greet.", show_default=False)] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", metavar="NAME", help="tiny (default).")] = None,
    checkpoint: Annotated[Path | None, typer.Option(metavar="CKPT", help="A ptcli checkpoint of this recipe.")] = None,
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
) -> None:
    """Greet each NAME, and show that a model ran on the chosen device."""
    from ptcli.inference.batching import run_batched
    from ptcli.devices import resolve_device
    from ptcli.models.loading import check_request, load_model
    from ptcli.inference.results import ResultFormat, emit_results

    names = names or ["world"]
    options = ("--model", "--checkpoint")
    check_request(RECIPE, checkpoint=checkpoint, model=model, default="tiny", options=options, device=device)
    target = resolve_device(device, RECIPE.devices.devices)
    loaded = load_model(RECIPE, checkpoint=checkpoint, model=model, default="tiny", options=options,
                        from_name=_untrained, needs_labels=False)
    net = loaded.model.to(target).eval()

    def postprocess(output, name):
        return {"greeting": f"Hello, {name}!", "device": str(target), "score": round(float(output[0]), 4)}

    results = run_batched(names, load=Greet(), forward=net, postprocess=postprocess, device=target, workers=0)
    fmt = ResultFormat(human=lambda name, r: f"{r['greeting']} (a tiny model ran on {r['device']} and said {r['score']:.4f})",
                       fields=lambda name, r: r, key=lambda name: {}, label=lambda number, name: f"name {number}",
                       noun="names")
    emit_results(results, fmt, total=len(names), json_output=json_output)
