"""A recipe's models by name: ``ModelSpec`` (how to build one and where its weights come
from) and ``ModelRegistry`` (fixed entries plus resolvers for open-ended families)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ptcli.errors import UsageError
from ptcli.models.weights import WeightsSpec


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
