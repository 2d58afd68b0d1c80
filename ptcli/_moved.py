"""Modules that moved in ptcli 0.2's layout (Core v3) and since, still importable under their old names
for a release: ``import ptcli.recipe`` gives ``ptcli.plugins.recipe`` itself (the same module
object, so its state is shared) with a DeprecationWarning naming the new place. Nothing in ptcli
imports an old name; this serves third-party plugins written against the flat layout.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

#: Old name -> new name, or the new modules whose public names the old one gathered.
MOVED: dict[str, str | tuple[str, ...]] = {
    "ptcli.batching": "ptcli.inference.batching",
    "ptcli.capabilities": "ptcli.plugins.capabilities",
    "ptcli.checkpointing": "ptcli.training.gradient_checkpointing",
    "ptcli.checkpoints": ("ptcli.models.checkpoints", "ptcli.models.sidecars", "ptcli.models.state_dicts", "ptcli.files"),
    "ptcli.commands": "ptcli.cli.commands",
    "ptcli.commands.env_cmd": "ptcli.cli.commands.env_cmd",
    "ptcli.commands.export_cmd": "ptcli.cli.commands.export_cmd",
    "ptcli.commands.plugins_cmd": "ptcli.cli.commands.plugins_cmd",
    "ptcli.commands.serve_cmd": "ptcli.cli.commands.serve_cmd",
    "ptcli.commands.train_cmd": "ptcli.cli.commands.train_cmd",
    "ptcli.commands.weights_cmd": "ptcli.cli.commands.weights_cmd",
    # basicsr's shim is super-resolve's alone now; the old name finds it where that recipe is installed.
    "ptcli.compat": "ptcli_super_resolve.basicsr_compat",
    "ptcli.config": "ptcli.training.config",
    "ptcli.defenses": "ptcli.vision.defenses",
    "ptcli.exporting.embedded": "ptcli.models.embedded",
    "ptcli.hookspecs": "ptcli.plugins.hookspecs",
    "ptcli.hub": "ptcli.models.hub",
    "ptcli.imaging": "ptcli.vision.imaging",
    "ptcli.inputs": "ptcli.inference.inputs",
    "ptcli.lite0": "ptcli.vision.lite0",
    "ptcli.loading": "ptcli.models.loading",
    "ptcli.options": "ptcli.cli.options",
    "ptcli.plugin_check": "ptcli.plugins.check",
    "ptcli.plugin_template": "ptcli.plugins.template",
    "ptcli.pretrained": "ptcli.vision.pretrained",
    "ptcli.recipe": "ptcli.plugins.recipe",
    "ptcli.results": "ptcli.inference.results",
    "ptcli.serving.inputs": "ptcli.serving.requests",
    "ptcli.testing": "ptcli.plugins.testing",
    "ptcli.tiny_inputs": "ptcli.plugins.tiny_inputs",
    "ptcli.weights": "ptcli.models.weights",
    # Core v4: attacks are a package of their own beside vision/.
    "ptcli.vision.attacks": "ptcli.attacks",
    "ptcli.vision.autoattack": "ptcli.attacks.autoattack",
    "ptcli.vision.fab": "ptcli.attacks.fab",
    "ptcli.vision.minimal": "ptcli.attacks.minimal",
    "ptcli.vision.square": "ptcli.attacks.square",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, old: str, new: str | tuple[str, ...]) -> None:
        self.old, self.new = old, new

    def create_module(self, spec):
        where = self.new if isinstance(self.new, str) else " and ".join(self.new)
        frame = _importer()
        warnings.warn_explicit(f"{self.old} has moved to {where}; import it from there (the old name goes in a later "
                               "release)", DeprecationWarning, frame.f_code.co_filename, frame.f_lineno,
                               module=frame.f_globals.get("__name__"), registry=frame.f_globals.setdefault("__warningregistry__", {}))
        if isinstance(self.new, str):
            module = importlib.import_module(self.new)
            self.spec = module.__spec__
            return module
        self.spec = None
        gathered = types.ModuleType(spec.name)
        for name in self.new:
            source = importlib.import_module(name)
            gathered.__dict__.update({k: v for k, v in vars(source).items() if not k.startswith("__")})
        return gathered

    def exec_module(self, module) -> None:
        if self.spec is not None:  # the import system stamped the old name's spec on the real module
            module.__spec__ = self.spec


def _importer():
    """The frame of the line that imported the old name (the first outside the import machinery)."""
    frame = sys._getframe(1)
    while frame.f_back is not None and (frame.f_code.co_filename.startswith("<frozen importlib") or frame.f_code.co_filename == __file__):
        frame = frame.f_back
    return frame


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in MOVED:
            return None
        return importlib.util.spec_from_loader(name, _Alias(name, MOVED[name]))


def install() -> None:
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
