"""Checkpoints and weights files.

The project's checkpoint is two files side by side: ``NAME.safetensors`` (tensors only, so
loading never runs code) and ``NAME.json`` (recipe, model, classes, preprocessing, versions,
created), so a checkpoint describes itself and loads without the config that made it.
Other people's ``.pt``/``.pth``/``.bin`` files load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from ptcli.errors import CheckpointError, PtcliError, UsageError, flatten

FORMAT = "ptcli-checkpoint"
FORMAT_VERSION = 1
_VERSIONED = ("ptcli", "torch", "torchvision", "torchaudio", "timm", "transformers")
#: Keys under which training scripts commonly nest the state dict (basicsr prefers params_ema).
_NESTED_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "model")


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


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(tensors, sidecar) for a checkpoint named by either file or by their common stem."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextmanager
def writing(target: Path):
    """A failed write (a full disk, a read-only or missing folder, no permission) as one line."""
    try:
        yield
    except OSError as exc:
        raise PtcliError(f"cannot write {target}: {exc.strerror or flatten(exc, 200)}") from exc


def atomic_write(target: Path, write: Callable[[str], None]) -> None:
    """Write through a temporary file and a rename: ``target`` is the old file or the new one,
    never half of either, whatever happens (a full disk, Ctrl-C, a crash)."""
    with writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            try:
                write(tmp)
            except RuntimeError as exc:  # torch.save and safetensors report a failed write so
                raise OSError(flatten(exc, 200)) from exc
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it private; the result is like any new file
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)


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


def read_sidecar(path: str | os.PathLike) -> dict:
    """A checkpoint's sidecar, or the one an export (model.onnx, .pt2, .pt) carries inside."""
    from ptcli.exporting import embedded

    if embedded.looks_like_export(path) and Path(path).is_file():
        return embedded.read(path)
    tensors_path, sidecar_path = checkpoint_paths(path)
    if not tensors_path.is_file() and not Path(path).is_file():
        raise UsageError(f"checkpoint not found: {path}")
    if not sidecar_path.is_file():
        raise UsageError(f"{path} is not a ptcli checkpoint: its sidecar {sidecar_path.name} is missing (for a bare weights file use --weights)")
    try:
        meta = json.loads(sidecar_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint sidecar {sidecar_path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UsageError(f"{sidecar_path} is not a ptcli checkpoint sidecar (no \"format\": \"{FORMAT}\")")
    return meta


def read_sidecar_for(path: str | os.PathLike, recipe: str | None) -> dict:
    """The sidecar; with ``recipe``, a checkpoint made by another recipe is a usage error."""
    meta = read_sidecar(path)
    if recipe is not None and meta.get("recipe") != recipe:
        made_by = meta.get("recipe") or "an unknown recipe"
        raise UsageError(
            f"checkpoint {path} was made by {made_by}, not {recipe}; use it with `ptcli {made_by} --checkpoint {path}`"
        )
    return meta


def load_checkpoint(path: str | os.PathLike, *, recipe: str | None = None) -> Checkpoint:
    """Load a checkpoint; with ``recipe``, one made by another recipe is a usage error."""
    tensors_path, _ = checkpoint_paths(path)
    meta = read_sidecar_for(path, recipe)
    return Checkpoint(path=tensors_path, state_dict=load_state_dict(tensors_path), meta=meta)


def load_state_dict(path: str | os.PathLike) -> dict:
    """Tensors from a .safetensors file, or from a .pt/.pth/.bin file without unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    import pickle

    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses a file in two ways: a pickle that names code to run (a class, a
        # function: "Unsupported global"; or opcodes it does not take), or bytes that are no
        # pickle at all. torch.save writes a zip ("PK"); a bare pickle starts with PROTO (0x80, N).
        with open(path, "rb") as handle:
            head = handle.read(2)
        if "Unsupported global" in str(exc) or head == b"PK" or (head[:1] == b"\x80" and head[1:2] in b"\x01\x02\x03\x04\x05"):
            raise CheckpointError(
                f"{path} holds pickled Python objects, which ptcli does not load (weights_only=True); "
                "re-save it with torch.save(model.state_dict(), PATH)"
            ) from exc
        raise CheckpointError(f"{path} is not a PyTorch weights file (neither torch.save's zip archive nor a "
                              "tensor pickle): a truncated download or another format") from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch weights file: {flatten(exc, 200)}") from exc
    return unwrap_state_dict(loaded, path)


def unwrap_state_dict(loaded: Any, path: Path | str = "weights") -> dict:
    """The tensor mapping inside a saved object (training scripts nest it under a key)."""
    import torch

    for key in _NESTED_KEYS:
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
            break
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return dict(loaded)


def load_weights_into(model: Any, state_dict: Mapping[str, Any], *, source: str, adapt: Callable[[dict, Any], dict] | None = None) -> None:
    """Load tensors into a model, turning a mismatch into one line that names both sides."""
    state = adapt(dict(state_dict), model) if adapt is not None else dict(state_dict)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        raise UsageError(f"{source} does not fit this model: {'; '.join(parts)}; check --model, or use --checkpoint for a fine-tuned model")
    model.load_state_dict(state)
