"""ptcli checkpoints: two files side by side, ``NAME.safetensors`` (tensors only, so loading
never runs code) and ``NAME.json`` (recipe, model, classes, preprocessing, versions, created),
so a checkpoint describes itself and loads without the config that made it. Reading the
sidecar is ptcli.models.sidecars' job; tensors from other files, ptcli.models.state_dicts'."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from ptcli.files import atomic_write
from ptcli.models.sidecars import FORMAT, FORMAT_VERSION, checkpoint_paths, read_sidecar_for
from ptcli.models.state_dicts import load_state_dict

_VERSIONED = ("ptcli", "torch", "torchvision", "torchaudio", "timm", "transformers")


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    state_dict: dict
    meta: dict

    @property
    def recipe(self) -> str:
        return self.meta.get("recipe", "")

    @property
    def model(self) -> str:
        return self.meta.get("model", "")

    @property
    def classes(self) -> list[str]:
        return list(self.meta.get("classes") or [])

    @property
    def preprocessing(self) -> dict:
        return dict(self.meta.get("preprocessing") or {})


def versions() -> dict[str, str]:
    found = {}
    for name in _VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def save_checkpoint(
    path: str | os.PathLike,
    state_dict: Mapping[str, Any],
    *,
    recipe: str,
    model: str,
    classes: Sequence[str] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write NAME.safetensors and NAME.json; each write is atomic. Returns the tensors' path."""
    from safetensors.torch import save_file

    tensors_path, sidecar_path = checkpoint_paths(path)
    # safetensors refuses tensors that share memory; a copy per tensor makes each its own.
    tensors = {key: value.detach().to("cpu").clone().contiguous() for key, value in state_dict.items()}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "recipe": recipe,
        "model": model,
        "classes": list(classes) if classes is not None else None,
        "preprocessing": dict(preprocessing or {}),
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **dict(extra or {}),
    }
    atomic_write(tensors_path, lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT, "recipe": recipe}))
    atomic_write(sidecar_path, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
    return tensors_path


def load_checkpoint(path: str | os.PathLike, *, recipe: str | None = None) -> Checkpoint:
    """Load a checkpoint; with ``recipe``, one made by another recipe is a usage error."""
    tensors_path, _ = checkpoint_paths(path)
    meta = read_sidecar_for(path, recipe)
    return Checkpoint(path=tensors_path, state_dict=load_state_dict(tensors_path), meta=meta)
