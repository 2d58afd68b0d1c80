"""The one reader of model-file metadata: a checkpoint's sidecar (``NAME.json`` beside
``NAME.safetensors``) or the sidecar an export carries inside (ptcli.models.embedded). Read
without importing torch, and once per file and version of it: a request that checks, then
loads, reads the file once."""

from __future__ import annotations

import copy
import json
import os
from functools import lru_cache
from pathlib import Path

from ptcli.errors import CheckpointError, UsageError

FORMAT = "ptcli-checkpoint"
FORMAT_VERSION = 1


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(tensors, sidecar) for a checkpoint named by either file or by their common stem."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def read_sidecar(path: str | os.PathLike) -> dict:
    """A checkpoint's sidecar, or the one an export (model.onnx, .pt2, .pt) carries inside."""
    from ptcli.models import embedded

    if embedded.looks_like_export(path) and Path(path).is_file():
        return copy.deepcopy(_cached(embedded.read, Path(path)))
    tensors_path, sidecar_path = checkpoint_paths(path)
    if not tensors_path.is_file() and not Path(path).is_file():
        if Path(path).is_dir():
            raise UsageError(f"{path} is a folder, not a checkpoint; give its NAME.safetensors (a run folder keeps best.safetensors and last.safetensors)")
        raise UsageError(f"checkpoint not found: {path}")
    if not sidecar_path.is_file():
        raise UsageError(f"{path} is not a ptcli checkpoint: its sidecar {sidecar_path.name} is missing (for a bare weights file use --weights)")
    return copy.deepcopy(_cached(_read_json_sidecar, sidecar_path))


def _cached(read, path: Path) -> dict:
    """``read(path)``, once per version of the file (its size and modification time)."""
    stat = path.stat()
    return _read_once(read, path.resolve(), (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))


@lru_cache(maxsize=64)
def _read_once(read, path: Path, _version: tuple) -> dict:
    return read(path)


def _read_json_sidecar(sidecar_path: Path) -> dict:
    from ptcli.models.embedded import MAX_SIDECAR_BYTES

    size = sidecar_path.stat().st_size
    if size > MAX_SIDECAR_BYTES:
        raise CheckpointError(f"checkpoint sidecar {sidecar_path} is {size / 2**20:.0f} MiB, over the "
                              f"{MAX_SIDECAR_BYTES / 2**20:.0f} MiB a sidecar may take; refused")
    try:
        meta = json.loads(sidecar_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint sidecar {sidecar_path} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise CheckpointError(f"checkpoint sidecar {sidecar_path} is nested too deeply to be a sidecar") from None
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
