"""The recipe contract: what a plugin declares so that the core can run it.

A recipe declares its name, its commands, its models, its data adapter and the devices and
precisions it supports. Declarations are cheap: anything heavy is named by a reference
(``"package.module:attribute"``) or wrapped in a function, and the core imports it only when a
command needs it. That is what keeps ``ptcli --help`` fast however many plugins are installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from ptcli.errors import PluginError, UsageError
from ptcli.models.registry import ModelRegistry, ModelSpec  # noqa: F401 (a recipe declares its models with them)

from ptcli.refs import Ref, load_ref  # noqa: E402,F401 (recipes name their code with them)


@dataclass(frozen=True)
class Command:
    """One CLI command. ``help`` is shown by ``ptcli --help`` without importing ``target``."""

    name: str
    help: str
    #: A function whose parameters are Typer arguments and options, e.g. "my_plugin.cli:run";
    #: None: the command the core derives from the recipe's ``predictor`` (ptcli.cli.derived).
    target: Ref | None = None
    #: Arguments that run the command on tiny inputs, for `ptcli plugins check`: {image}, {clip},
    #: {text}, {coco} (a COCO folder) and {tmp} (an empty folder) are filled in. Empty: not run.
    example: tuple[str, ...] = ()
    #: Options that may be given without their value, which then means the first choice:
    #: {"--track": ("bytetrack", "botsort", "ocsort")} lets `--track` stand for `--track bytetrack`.
    optional_values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: A derived command's (no ``target``) own words: its --help text (default: ``help``), and
    #: the shared options' help reworded for the recipe, by parameter name ("inputs", "model",
    #: "weights", "checkpoint", "batch_size", "output").
    doc: str | None = None
    help_for: Mapping[str, str] = field(default_factory=dict)
    #: A derived command's --data DIR, with this help: a run over a labelled data set (the
    #: predictor's ``evaluate``, printed by ``format_evaluation``) instead of inputs.
    data: str | None = None


@dataclass(frozen=True)
class DeviceSupport:
    """The devices (in the order ``--device auto`` prefers them) and precisions a recipe runs with."""

    devices: tuple[str, ...] = ("cuda", "mps", "cpu")
    precisions: tuple[str, ...] = ("fp32",)


class DataAdapter(Protocol):
    """How a recipe reads its inputs from disk."""

    #: File name endings that folder and glob inputs are filtered by (lower case, with the dot).
    extensions: tuple[str, ...]

    def read(self, path: Path) -> Any:
        """Read one input. Raise ptcli.errors.InputError when the file cannot be read."""


@dataclass(frozen=True)
class Recipe:
    """A task: its commands, models, data adapter and device handling."""

    name: str
    help: str
    commands: tuple[Command, ...] = ()
    #: A zero-argument factory returning this recipe's ModelRegistry.
    models: Ref | None = None
    #: A zero-argument factory returning this recipe's DataAdapter.
    data: Ref | None = None
    devices: DeviceSupport = DeviceSupport()
    #: The recipe's training: a ptcli.training.task.TrainingTask subclass, for `ptcli train`,
    #: `ptcli lr-find` and `ptcli eval` (None: the recipe does inference only).
    training: Ref | None = None
    #: What the recipe offers other plugins, by capability name (see ptcli.plugins.capabilities): for
    #: "image-classifier", a loader the adversarial commands drive, so they name no recipe.
    provides: Mapping[str, Ref] = field(default_factory=dict)
    #: The recipe's inference (see ptcli.inference.contract): a Predictor subclass, from which
    #: its command's loop and `ptcli serve` derive.
    predictor: Ref | None = None
    #: How the recipe's model exports (`ptcli export`): a function
    #: ``(checkpoint, model, weights, samples) -> ptcli.exporting.spec.Exportable``
    #: (None: the recipe does not export, and says so).
    export: Ref | None = None
    #: How the recipe's model serves (`ptcli serve`) when it declares no ``predictor``: a function
    #: ``(checkpoint, model, weights, device) -> ptcli.serving.spec.Servable`` (None: a recipe
    #: with a predictor serves through it; one with neither does not serve).
    serve: Ref | None = None
    #: The wrappers its exports run through in its commands, by the key an export's sidecar
    #: stores (ptcli.models.trust): a model file names one of these, never code of its own.
    runtimes: Mapping[str, Ref] = field(default_factory=dict)
    #: Modules that register the custom operators its exported models call (torchvision's nms),
    #: imported before an export of this recipe loads.
    model_ops: tuple[str, ...] = ()

    @cached_property
    def model_registry(self) -> ModelRegistry:
        if self.models is None:
            return ModelRegistry(self.name)
        registry = load_ref(self.models)()
        if not isinstance(registry, ModelRegistry):
            raise PluginError(f"recipe {self.name}: models factory returned {type(registry).__name__}, not a ModelRegistry")
        return registry

    @cached_property
    def training_task(self):
        if self.training is None:
            raise UsageError(f"recipe {self.name} has no training; recipes that train: see `ptcli plugins`")
        return load_ref(self.training)

    @cached_property
    def data_adapter(self) -> DataAdapter:
        if self.data is None:
            raise PluginError(f"recipe {self.name} declares no data adapter")
        return load_ref(self.data)()
