"""The run folder: ``runs/<recipe>/<name>/`` with config.yaml, metrics.jsonl, TensorBoard
events and checkpoints/ (last and best exports plus the full training state).

Every file is written atomically (a temporary file, then a rename), so a crash or Ctrl-C never
leaves a half-written checkpoint. The training state is one file, so resuming always reads a
consistent optimizer, scheduler, RNG and position.
"""

from __future__ import annotations

import json
import os
import pickle
import random
from pathlib import Path
from typing import Any

from ptcli.files import atomic_write, writing
from ptcli.errors import CheckpointError, UsageError, flatten

STATE_FORMAT = "ptcli-training-state"
STATE_FILE = "training_state.pt"


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def state_path(self) -> Path:
        return self.checkpoints / STATE_FILE

    def checkpoint(self, which: str) -> Path:
        return self.checkpoints / f"{which}.safetensors"

    @classmethod
    def create(cls, root: Path, recipe: str, name: str) -> RunDir:
        """A new, empty run folder; a taken name gets the first free -2, -3, ... suffix."""
        base = Path(root) / recipe
        candidate, n = base / name, 1
        while candidate.exists() and any(candidate.iterdir()):
            n += 1
            candidate = base / f"{name}-{n}"
        with writing(candidate):
            candidate.mkdir(parents=True, exist_ok=True)
        return cls(candidate)

    @classmethod
    def existing(cls, path: Path) -> RunDir:
        run = cls(path)
        if not run.config_path.is_file():
            raise UsageError(f"resume={path}: not a ptcli run folder (no config.yaml)")
        if not run.state_path.is_file():
            raise UsageError(f"resume={path}: no training state to resume from ({run.state_path} is missing): "
                             "the run stopped before its first epoch ended; start it again")
        for stale in run.checkpoints.glob(".*.tmp"):  # a write that a killed process never finished
            stale.unlink(missing_ok=True)
        return run

    def write_config(self, text: str) -> None:
        atomic_write(self.config_path, lambda tmp: Path(tmp).write_text(text))

    def append_metrics(self, record: dict) -> None:
        with writing(self.metrics_path), self.metrics_path.open("a") as stream:
            stream.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, completed_epochs: int) -> None:
        """Drop records of epochs that the training state does not include, so a resumed
        run never counts an epoch twice."""
        kept = [r for r in self.read_metrics() if r.get("epoch", 0) <= completed_epochs]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        atomic_write(self.metrics_path, lambda tmp: Path(tmp).write_text(text))

    # --- training state ----------------------------------------------------------------
    def save_state(self, state: dict) -> None:
        import torch

        payload = {"format": STATE_FORMAT, "format_version": 1, **state, "rng": capture_rng()}
        atomic_write(self.state_path, lambda tmp: torch.save(payload, tmp))

    def load_state(self) -> dict:
        import torch

        try:
            state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
            raise CheckpointError(f"cannot read training state {self.state_path}: {flatten(exc, 200)}") from exc
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{self.state_path} is not a ptcli training state")
        return state


def capture_rng() -> dict[str, Any]:
    """Python, numpy and torch generator states, in types that load with weights_only=True."""
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(saved: dict[str, Any]) -> None:
    import numpy as np
    import torch

    version, internal, gauss_next = saved["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, gauss = saved["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(saved["torch"])
    if saved.get("cuda") and torch.cuda.is_available() and len(saved["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(saved["cuda"])


def default_run_name(config_file: str | os.PathLike | None) -> str:
    return Path(config_file).stem if config_file else "run"
