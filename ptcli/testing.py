"""Test helpers for plugin authors: run ptcli commands with your plugin registered (installed
or not), offline, and get the exit code, stdout, stderr and parsed JSON; tiny inputs for every
kind of task. In a plugin's tests::

    # conftest.py
    pytest_plugins = ["ptcli.testing"]

    # test_my_plugin.py
    import my_plugin

    def test_it_runs(ptcli, tiny_image):
        result = ptcli("my-command", tiny_image, "--json", plugins=[my_plugin])
        assert result.exit_code == 0, result.stderr
        assert result.json["label"] == ...

The ``ptcli`` fixture runs in-process, offline (PTCLI_OFFLINE=1, HF_HUB_OFFLINE=1) with empty
caches; ``run_process`` runs a real ``python -m ptcli`` for start-up and entry-point checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[Any]:
        """Every stdout line parsed as JSON (for --json output, one object per input)."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    @property
    def json(self) -> Any:
        """The last stdout line parsed as JSON (a single report, or a run's summary)."""
        return self.lines[-1]


def run(*args: Any, plugins: Iterable[ModuleType] = (), input: str | None = None) -> Result:
    """``ptcli ARGS`` in this process, with ``plugins`` (modules with a ``register_recipes``
    hook) registered beside the installed ones, without installing them."""
    from typer.testing import CliRunner

    from ptcli import plugins as plugin_manager
    from ptcli.cli import app

    plugin_manager.reset_plugins()
    plugin_manager._cache = plugin_manager.load_plugins(list(plugins))
    try:
        result = CliRunner().invoke(app, [str(a) for a in args], input=input, catch_exceptions=False, prog_name="ptcli")
    finally:
        plugin_manager.reset_plugins()
    return Result(result.exit_code, result.stdout, result.stderr)


def run_process(*args: Any, env: dict | None = None, cwd: Path | None = None, timeout: float = 300) -> Result:
    """``python -m ptcli ARGS`` in a fresh process (installed plugins only)."""
    done = subprocess.run([sys.executable, "-m", "ptcli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=timeout)
    return Result(done.returncode, done.stdout, done.stderr)


# --- tiny inputs --------------------------------------------------------------------------------


def write_image(path: Path, size: Sequence[int] = (32, 24), seed: int = 0) -> Path:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def write_clip(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    import numpy as np
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), rate)
    return path


def write_coco(root: Path, images: int = 4) -> Path:
    """root/images/*.png with one square each, and train.json, val.json (COCO; category 1 "square")."""
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    entries, annotations = [], []
    for i in range(1, images + 1):
        pixels = rng.integers(60, 200, size=(48, 64, 3), dtype=np.uint8)
        x, y = int(rng.integers(0, 40)), int(rng.integers(0, 24))
        pixels[y: y + 16, x: x + 16] = (220, 40, 40)
        Image.fromarray(pixels).save(root / "images" / f"{i}.png")
        entries.append({"id": i, "file_name": f"{i}.png", "width": 64, "height": 48})
        annotations.append({"id": i, "image_id": i, "category_id": 1, "bbox": [x, y, 16, 16], "area": 256.0, "iscrowd": 0})
    half = images // 2
    for name, part in (("train", slice(0, max(half, 1))), ("val", slice(max(half, 1), None))):
        chosen = entries[part]
        ids = {e["id"] for e in chosen}
        data = {"images": chosen, "annotations": [a for a in annotations if a["image_id"] in ids],
                "categories": [{"id": 1, "name": "square"}]}
        (root / f"{name}.json").write_text(json.dumps(data))
    return root


TINY_TEXT = "The food was good and the service quick."


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def ptcli_offline(monkeypatch, tmp_path):
    """Offline, with empty caches: what a user without network sees."""
    caches = tmp_path / "ptcli-caches"
    monkeypatch.setenv("PTCLI_CACHE", str(caches / "ptcli"))
    monkeypatch.setenv("TORCH_HOME", str(caches / "torch"))
    monkeypatch.setenv("HF_HOME", str(caches / "hf"))
    monkeypatch.setenv("PTCLI_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return caches


@pytest.fixture
def ptcli(ptcli_offline):
    """``ptcli(*args, plugins=[module], input=None) -> Result``, in-process and offline."""
    return run


@pytest.fixture
def tiny_image(tmp_path) -> Path:
    return write_image(tmp_path / "tiny.png")


@pytest.fixture
def tiny_clip(tmp_path) -> Path:
    return write_clip(tmp_path / "tiny.wav")


@pytest.fixture
def tiny_text() -> str:
    return TINY_TEXT


@pytest.fixture
def tiny_coco(tmp_path) -> Path:
    return write_coco(tmp_path / "coco")
