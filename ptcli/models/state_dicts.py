"""State dicts: tensors from any weights file without running its code (safetensors, or
``torch.load(weights_only=True)`` with the refusal of pickled objects said in one line), the
mapping found inside training scripts' nesting, and loading into a model with a mismatch named."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ptcli.errors import CheckpointError, UsageError, flatten

#: Keys under which training scripts commonly nest the state dict (basicsr prefers params_ema).
_NESTED_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "model")


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
