import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path):
    """Every test runs offline with empty caches and the installed plugins only."""
    caches = tmp_path / "caches"
    monkeypatch.setenv("PTCLI_CACHE", str(caches / "ptcli"))
    monkeypatch.setenv("TORCH_HOME", str(caches / "torch"))
    monkeypatch.setenv("HF_HOME", str(caches / "hf"))
    monkeypatch.setenv("PTCLI_OFFLINE", "1")
    for name in ("PTCLI_PLUGINS", "PTCLI_STRICT_PLUGINS", "HF_HUB_OFFLINE", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    from ptcli.plugins import reset_plugins

    reset_plugins()
    yield
    reset_plugins()


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED / "README.md").is_file():
        pytest.skip(f"shared test data not found at {SHARED}")
    return SHARED


@pytest.fixture
def cli():
    """Run ptcli in-process; returns a Result (exit_code, stdout, stderr)."""
    from ptcli.cli import app
    from ptcli.plugins import reset_plugins

    def invoke(*args: str, plugins=None):
        """``plugins``: load these modules as plugins as well as the installed ones."""
        reset_plugins()
        if plugins is not None:
            from ptcli import plugins as plugin_manager

            plugin_manager._cache = plugin_manager.load_plugins(plugins)
        return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False, prog_name="ptcli")

    return invoke


def run_ptcli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m ptcli ...` in a fresh process (for start-up, plugin discovery, exit codes)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ptcli", *map(str, args)],
        capture_output=True, text=True, env=full_env, cwd=cwd or REPO, timeout=300,
    )


COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200)}


def make_imagefolder(root: Path, per_class: dict[str, int], size: int = 16, seed: int = 0) -> Path:
    """root/<split>/<colour>/NN.png: noisy squares of one colour per class (learnable in seconds)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for name, rgb in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.clip(rng.normal(rgb, 40, size=(size, size, 3)), 0, 255).astype("uint8")
                Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    return root


@pytest.fixture
def tiny_imagefolder(tmp_path) -> Path:
    return make_imagefolder(tmp_path / "colours", {"train": 12, "val": 4})


def write_yaml(path: Path, data: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def simplenet_config(tmp_path, tiny_imagefolder) -> Path:
    """A classify-image config that trains SimpleNet on tiny_imagefolder in about a second."""
    return write_yaml(tmp_path / "tiny.yaml", {
        "recipe": "classify-image",
        "data": {"root": str(tiny_imagefolder), "image_size": 16, "augment": "none"},
        "model": {"name": "simplenet"},
        "trainer": {"epochs": 2, "batch_size": 8, "lr": 0.003, "optimizer": "adam"},
        "run": {"dir": str(tmp_path / "runs")},
    })
