"""The hello command. torch is imported inside functions, so `ptcli --help` stays fast."""

from typing import Annotated

import typer

from ptcli.options import DeviceOption, JsonOption
from ptcli.recipe import ModelRegistry, ModelSpec

from . import RECIPE


def build_tiny(num_classes: int = 1):
    import torch

    torch.manual_seed(0)
    return torch.nn.Linear(4, num_classes)


def make_registry() -> ModelRegistry:
    registry = ModelRegistry("hello")
    registry.add(ModelSpec(name="tiny", build=build_tiny, description="A 4-to-1 linear layer"))
    return registry


def hello(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Who to greet.")] = "world",
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
) -> None:
    """Greet NAME, and show that a model ran on the chosen device."""
    import torch

    from ptcli.devices import resolve_device
    from ptcli.output import emit, emit_json

    target = resolve_device(device, RECIPE.devices.devices)
    model = RECIPE.model_registry.get("tiny").build().to(target)
    with torch.inference_mode():
        score = float(model(torch.ones(1, 4, device=target)))
    if json_output:
        emit_json({"greeting": f"Hello, {name}!", "device": str(target), "score": round(score, 4)})
    else:
        emit(f"Hello, {name}! (a tiny model ran on {target} and said {score:.4f})")
