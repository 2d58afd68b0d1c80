"""Loading a model for inference, once for every recipe: from ``--checkpoint``, or from
``--model`` with its published weights or ``--weights FILE``.

A recipe calls ``load_model`` with its Recipe and what the user gave. The options a command
does not have are passed as ``None`` and named in ``options``, so that no error hint sends a
user to an option their command lacks. The recipe's part is small and optional:

- ``rebuild(spec, checkpoint)``: the architecture a checkpoint describes, with random weights
  (default: ``spec.build(num_classes=len(classes), **model_args)``; without classes, only the
  model_args);
- ``from_name(spec, weights)``: a named model when it is not "build, then load a state dict"
  (a Hugging Face folder, a model whose size is read from the weights file).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptcli.errors import CheckpointError, UsageError, flatten

#: Every option load_model knows of, in the order hints name them.
ALL_OPTIONS = ("--model", "--weights", "--checkpoint")


@dataclass
class LoadedModel:
    """What inference needs of a model, however it was found."""

    model: Any
    #: The label of each output index (None: the model does not label anything).
    labels: list[str] | None = None
    #: How inputs are prepared (sizes, mean, std, sample rate, scale, ...).
    preprocessing: dict = field(default_factory=dict)
    #: What the model was loaded from: a model name, a checkpoint or weights path.
    source: str = ""
    #: The checkpoint's sidecar (empty for a named model): tokenizers, model_args, data layout.
    meta: dict = field(default_factory=dict)
    #: Anything more a recipe's ``from_name`` returns (a tokenizer, a feature extractor).
    extra: Any = None


def exclusive_sources(checkpoint: Any, model: Any, weights: Any, options: Sequence[str] = ALL_OPTIONS) -> None:
    """A checkpoint names its own model and weights: refuse --model and --weights beside it
    (the hint names those of ``options`` the command has)."""
    if checkpoint is None or (model is None and weights is None):
        return
    drop = "/".join(option for option in ("--model", "--weights") if option in options)
    raise UsageError(f"--checkpoint already names its model{' and weights' if '--weights' in options else ''}; drop {drop}")


def default_rebuild(spec, ckpt) -> Any:
    args = dict(ckpt.meta.get("model_args") or {})
    if ckpt.classes:
        return spec.build(num_classes=len(ckpt.classes), **args)
    return spec.build(**args)


def rebuild_checkpoint(recipe, path: Path, *, rebuild: Callable = default_rebuild, needs_labels: bool = True) -> LoadedModel:
    """The model a checkpoint of ``recipe`` holds, weights loaded; or an export of one
    (model.onnx, .pt2, .pt), run by its runtime with the same labels and preprocessing."""
    from ptcli.models.checkpoints import load_checkpoint
    from ptcli.models.sidecars import read_sidecar_for
    from ptcli.models.state_dicts import load_weights_into
    from ptcli.models import embedded

    if embedded.looks_like_export(path) and path.is_file():
        from ptcli.models.exported import load

        meta = read_sidecar_for(path, recipe.name)
        if needs_labels and not meta.get("classes"):
            raise UsageError(f"export {path} lists no classes; it cannot label predictions")
        return LoadedModel(load(path, meta, recipe), meta.get("classes") or None, dict(meta.get("preprocessing") or {}), str(path), meta)

    ckpt = load_checkpoint(path, recipe=recipe.name)
    if needs_labels and not ckpt.classes:
        raise UsageError(f"checkpoint {path} lists no classes; it cannot label predictions")
    spec = recipe.model_registry.get(ckpt.model)
    try:
        model = rebuild(spec, ckpt)
    except (TypeError, KeyError, ValueError) as exc:  # model_args written by another version of the recipe
        raise CheckpointError(f"checkpoint {path}: cannot rebuild its model from model_args "
                              f"{ckpt.meta.get('model_args')} ({ckpt.model}): {flatten(exc, 200)}") from exc
    load_weights_into(model, ckpt.state_dict, source=f"checkpoint {path}")
    return LoadedModel(model, ckpt.classes or None, ckpt.preprocessing or dict(spec.preprocessing), str(path), ckpt.meta)


def no_weights_hint(options: Sequence[str]) -> str:
    """"pass --weights PATH or --checkpoint CKPT", with only the options the command has."""
    offered = [f"{option} {'PATH' if option == '--weights' else 'CKPT'}" for option in ("--weights", "--checkpoint")
               if option in options]
    return f"pass {' or '.join(offered)}" if offered else "this command cannot run it"


def weights_path(spec, weights: Path | None, options: Sequence[str]) -> Path:
    """The file to load into ``spec``'s model: ``--weights``, else its published weights."""
    from ptcli.models.weights import local_weights, resolve

    if weights is not None:
        return local_weights(weights)
    if spec.weights is None:
        raise UsageError(f"model {spec.name} has no published weights; {no_weights_hint(options)}")
    return resolve(spec.weights)


def build_named(spec, weights: Path | None, options: Sequence[str] = ALL_OPTIONS) -> LoadedModel:
    """A named model: its architecture, then its published weights or ``--weights`` into it."""
    from ptcli.models.state_dicts import load_state_dict, load_weights_into

    path = weights_path(spec, weights, options)
    model = spec.build()
    load_weights_into(model, load_state_dict(path), source=f"weights {path}", adapt=spec.adapt_state_dict)
    labels = list(spec.labels()) if spec.labels is not None else None
    return LoadedModel(model, labels, dict(spec.preprocessing), spec.name)


def load_model(
    recipe,
    *,
    checkpoint: Path | None = None,
    model: str | None = None,
    weights: Path | None = None,
    default: str | None = None,
    options: Sequence[str] = ALL_OPTIONS,
    rebuild: Callable = default_rebuild,
    from_name: Callable | None = None,
    needs_labels: bool = True,
) -> LoadedModel:
    """The model the user asked for: a checkpoint of ``recipe``, else ``model`` (or
    ``default``) from the recipe's registry with its published weights or ``weights``."""
    exclusive_sources(checkpoint, model, weights, options)
    if checkpoint is not None:
        return rebuild_checkpoint(recipe, Path(checkpoint), rebuild=rebuild, needs_labels=needs_labels)
    name = model or default
    if name is None:
        raise UsageError(f"give {' or '.join(o for o in ('--model', '--checkpoint') if o in options)}")
    if from_name is not None:
        return from_name(name, weights)
    return build_named(recipe.model_registry.get(name), weights, options)


def check_request(recipe, *, checkpoint: Path | None = None, model: str | None = None, weights: Path | None = None,
                  default: str | None = None, options: Sequence[str] = ALL_OPTIONS, device: str | None = None) -> None:
    """The mistakes that need no model, caught before torch is imported (so they answer in a
    fraction of a second): --checkpoint with --model/--weights, a checkpoint or weights file
    that is not there or is another recipe's, an unknown model name, a malformed --device."""
    from ptcli.models.sidecars import read_sidecar_for
    from ptcli.devices import check_device_syntax
    from ptcli.models.hub import looks_like_path
    from ptcli.models import embedded
    from ptcli.models.trust import export_code
    from ptcli.models.weights import local_weights

    if device is not None:
        check_device_syntax(device)
    exclusive_sources(checkpoint, model, weights, options)
    if checkpoint is not None:
        meta = read_sidecar_for(checkpoint, recipe.name)
        if embedded.looks_like_export(checkpoint):
            export_code(recipe, meta, checkpoint)
        return
    if weights is not None:
        local_weights(weights)
    name = model or default
    if name is not None and not looks_like_path(name) and recipe.models is not None:
        recipe.model_registry.get(name)  # (a recipe with no models of its own, explain's, asks a capability's)
