"""The recipe contract: what a plugin declares so that the core can run it.

A recipe declares its name, its commands, its models, its data adapter and the devices and
precisions it supports. Declarations are cheap: anything heavy is named by a reference
(``"package.module:attribute"``) or wrapped in a function, and the core imports it only when a
command needs it. That is what keeps ``ptcli --help`` fast however many plugins are installed.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from ptcli.errors import PluginError, UsageError
from ptcli.weights import WeightsSpec

#: A lazy reference: "package.module:attribute", or the object itself.
Ref = str | Callable[..., Any]


def load_ref(ref: Ref) -> Any:
    """Import the object a "module:attribute" reference names (objects pass through)."""
    if not isinstance(ref, str):
        return ref
    module_name, _, attribute = ref.partition(":")
    if not module_name or not attribute:
        raise PluginError(f"bad reference {ref!r}: expected 'package.module:attribute'")
    try:
        target = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except Exception as exc:  # a plugin's code may raise anything on import
        from ptcli.errors import one_line

        raise PluginError(f"cannot load {ref}: {one_line(exc)}") from exc
    return target


@dataclass(frozen=True)
class Command:
    """One CLI command. ``help`` is shown by ``ptcli --help`` without importing ``target``."""

    name: str
    help: str
    #: A function whose parameters are Typer arguments and options, e.g. "my_plugin.cli:run";
    #: None: the command the core derives from the recipe's ``predictor`` (ptcli.inference.command).
    target: Ref | None = None
    #: Arguments that run the command on tiny inputs, for `ptcli plugins check`: {image}, {clip},
    #: {text}, {coco} (a COCO folder) and {tmp} (an empty folder) are filled in. Empty: not run.
    example: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeviceSupport:
    """The devices (in the order ``--device auto`` prefers them) and precisions a recipe runs with."""

    devices: tuple[str, ...] = ("cuda", "mps", "cpu")
    precisions: tuple[str, ...] = ("fp32",)


@dataclass(frozen=True)
class ModelSpec:
    """How to build one named model and where its default weights come from."""

    name: str
    #: Builds the architecture with random weights; keyword arguments are the recipe's own
    #: (a classifier takes ``num_classes``).
    build: Callable[..., Any]
    #: The weights used when the user gives none (None: the model has no published weights).
    weights: WeightsSpec | None = None
    #: What the model expects of its inputs (sizes, mean, std, ...), stored in checkpoints.
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    #: Returns the label of each output index of the published weights.
    labels: Callable[[], Sequence[str]] | None = None
    #: Renames a published state dict to this architecture's keys, when the two differ.
    adapt_state_dict: Callable[[dict, Any], dict] | None = None
    description: str = ""


class ModelRegistry:
    """Model names to ModelSpecs: fixed entries plus resolvers for open-ended families
    (every torchvision classifier, ``timm/<name>``)."""

    def __init__(self, recipe: str, list_hint: str | None = None) -> None:
        """``list_hint`` tells users where to see every name (default: the names themselves)."""
        self.recipe = recipe
        self.list_hint = list_hint
        self._specs: dict[str, ModelSpec] = {}
        self._resolvers: list[tuple[Callable[[str], ModelSpec | None], Callable[[], Iterable[str]], bool]] = []

    def add(self, spec: ModelSpec) -> ModelSpec:
        self._specs[spec.name] = spec
        return spec

    def add_resolver(
        self,
        resolve: Callable[[str], ModelSpec | None],
        names: Callable[[], Iterable[str]] = tuple,
        *,
        catch_all: bool = False,
    ) -> None:
        """``resolve(name)`` returns a spec or None; ``names()`` lists what it can build
        (patterns such as ``timm/<name>`` are fine). ``catch_all``: it accepts any name of a
        kind (every Hugging Face ``org/name``), so other recipes' specific entries win over it
        when a name is looked up across recipes (``ptcli weights``)."""
        self._resolvers.append((resolve, names, catch_all))

    def names(self) -> list[str]:
        found = list(self._specs)
        for _, names, _ in self._resolvers:
            found += [name for name in names() if name not in found]
        return found

    def find(self, name: str, *, resolvers: bool = True, catch_all: bool = True) -> ModelSpec | None:
        """The spec called ``name``: a fixed entry, else (``resolvers``) a resolver's, with
        catch-all resolvers last (and only with ``catch_all``)."""
        if name in self._specs:
            return self._specs[name]
        if not resolvers:
            return None
        ordered = [r for r in self._resolvers if not r[2]] + ([r for r in self._resolvers if r[2]] if catch_all else [])
        for resolve, _, _ in ordered:
            spec = resolve(name)
            if spec is not None:
                return spec
        return None

    def get(self, name: str) -> ModelSpec:
        spec = self.find(name)
        if spec is None:
            close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            known = self.list_hint or f"known models: {', '.join(self.names()) or 'none'}"
            raise UsageError(f"unknown model {name!r} for {self.recipe}; {hint}{known}")
        return spec


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
    #: What the recipe offers other plugins, by capability name (see ptcli.capabilities): for
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
