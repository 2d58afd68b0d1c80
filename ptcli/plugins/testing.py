"""Test helpers for plugin authors: run ptcli commands with your plugin registered (installed
or not), offline, and get the exit code, stdout, stderr and parsed JSON; tiny inputs for every
kind of task. In a plugin's tests::

    # conftest.py
    pytest_plugins = ["ptcli.plugins.testing"]

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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ptcli.plugins.tiny_inputs import TINY_TEXT, write_clip, write_coco, write_image  # noqa: F401 (part of the kit)


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


# --- fixtures -----------------------------------------------------------------------------------


def offline_environment(monkeypatch, caches: Path) -> Path:
    """PTCLI_OFFLINE and empty ptcli, torch and Hugging Face caches under ``caches``."""
    monkeypatch.setenv("PTCLI_CACHE", str(caches / "ptcli"))
    monkeypatch.setenv("TORCH_HOME", str(caches / "torch"))
    monkeypatch.setenv("HF_HOME", str(caches / "hf"))
    monkeypatch.setenv("PTCLI_OFFLINE", "1")
    return caches


@pytest.fixture
def ptcli_offline(monkeypatch, tmp_path):
    """Offline, with empty caches: what a user without network sees."""
    offline_environment(monkeypatch, tmp_path / "ptcli-caches")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PTCLI_PROGRESS_SECONDS", "0")  # stderr that does not depend on the clock
    return tmp_path / "ptcli-caches"


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
