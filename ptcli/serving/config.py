"""What `ptcli serve` serves: one model from the command line, or several from ``--config
FILE.yaml``::

    models:
      - name: cat                  # the model's name in /predict/{name}, /v2/models/{name}, /v1
        recipe: classify-image     # or a checkpoint (which names its recipe)
        model: efficientnet_lite0  # one of model | weights | checkpoint (none: the default)
        max_batch: 16              # these four default to the command line's options
        max_wait_ms: 5
        device: cpu                # a list shares replicas out: cuda:0,cuda:1
        replicas: 1                # model processes per device (1: in the server's process)

Paths are relative to the file. Every mistake is a usage error naming its key, before any
model loads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ptcli.errors import UsageError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str | None = None
    recipe: str | None = None
    model: str | None = None
    weights: Path | None = None
    checkpoint: Path | None = None
    max_batch: int | None = Field(None, ge=1)
    max_wait_ms: float | None = Field(None, ge=0)
    device: str | None = None
    replicas: int | None = Field(None, ge=1, le=64)
    #: The recipe's own options (its Predictor's declaration: `ptcli plugins check`), as its
    #: command's flags would set them: {threshold: 0.5}.
    options: dict[str, Any] | None = None


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[ModelConfig] = Field(min_length=1)


class ServedModelSpec(BaseModel):
    """One model to serve, every value settled."""

    model_config = ConfigDict(protected_namespaces=(), arbitrary_types_allowed=True)

    name: str
    recipe: str
    model: str | None = None
    weights: Path | None = None
    checkpoint: Path | None = None
    max_batch: int
    max_wait_ms: float
    devices: list[str]
    replicas: int
    options: dict[str, Any] = Field(default_factory=dict)


def read_config(path: Path) -> ServeConfig:
    from ptcli.training.config import read_yaml, validate

    config = validate(ServeConfig, read_yaml(path, keys="models: [{name: ..., recipe: ..., checkpoint: ...}, ...]"),
                      source=str(path))
    for entry in config.models:
        for key in ("weights", "checkpoint"):
            value = getattr(entry, key)
            if value is not None and not value.is_absolute():
                setattr(entry, key, path.parent / value)
    return config


def settle(entries: list[ModelConfig], *, max_batch: int, max_wait_ms: float, device: str, replicas: int,
           source: str | None = None) -> list[ServedModelSpec]:
    """Each entry with its recipe found (from its checkpoint, else ``recipe``), its name (else
    the recipe's), the command line's defaults filled in, and every request checked as the
    commands check theirs (files there, models known, devices well formed)."""
    from ptcli.devices import check_device_syntax
    from ptcli.models.loading import check_request
    from ptcli.plugins import requested_recipe

    specs: list[ServedModelSpec] = []
    for number, entry in enumerate(entries):
        where = f"{source}: models[{number}]: " if source else ""
        try:
            recipe = requested_recipe(entry.checkpoint, entry.recipe, entry.model, entry.weights)
        except UsageError as exc:
            raise UsageError(f"{where}{exc}") from exc
        if recipe.predictor is None and recipe.serve is None:
            raise UsageError(f"{where}recipe {recipe.name} cannot be served (it declares no predictor); see `ptcli plugins`")
        devices = [part.strip() for part in (entry.device or device).split(",") if part.strip()] or ["auto"]
        for one in devices:
            check_device_syntax(one)
        try:
            check_request(recipe, checkpoint=entry.checkpoint, model=entry.model, weights=entry.weights)
        except UsageError as exc:
            raise UsageError(f"{where}{exc}") from exc
        name = entry.name or recipe.name
        if not NAME.match(name):
            raise UsageError(f"{where}name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        if any(spec.name == name for spec in specs):
            raise UsageError(f"{where}two models are named {name!r}; give each a name")
        if recipe.predictor is None and (entry.replicas or replicas) > 1:
            raise UsageError(f"{where}recipe {recipe.name} predates the inference contract and serves in the server's process only; drop replicas")
        options = _settled_options(recipe, entry.options, where)
        specs.append(ServedModelSpec(
            name=name, recipe=recipe.name, model=entry.model, weights=entry.weights, checkpoint=entry.checkpoint,
            max_batch=entry.max_batch or max_batch,
            max_wait_ms=max_wait_ms if entry.max_wait_ms is None else entry.max_wait_ms,
            devices=devices, replicas=entry.replicas or replicas, options=options))
    return specs


def _settled_options(recipe, values: dict | None, where: str) -> dict:
    """models.yaml's ``options:`` checked against the recipe's Predictor, before any model
    loads: a usage error naming an unknown or ill-typed option, and the options there are."""
    from ptcli.inference.options import OptionError, declared, settle
    from ptcli.refs import load_ref

    if not values:
        return {}
    if recipe.predictor is None:
        raise UsageError(f"{where}recipe {recipe.name} takes no options")
    cls = load_ref(recipe.predictor)
    if not declared(cls, served=True):
        raise UsageError(f"{where}options: recipe {recipe.name} declares no options")
    try:
        settle(declared(cls, served=True), values, where=where)
    except OptionError as exc:
        raise UsageError(str(exc)) from None
    cls.check_options(values)
    return dict(values)
