"""The plugin system. This module discovers and loads plugins; beside it, what a plugin
declares (``recipe``, ``hookspecs``), what recipes offer each other (``capabilities``) and a
plugin author's kit (``template``, ``check``, ``testing``, ``tiny_inputs``).


Every plugin, built-in or third-party, is an entry point in the group ``ptcli`` that names a
module with hook implementations (see hookspecs.py). Each plugin loads inside its own error
boundary: a plugin that fails is recorded with status ``error`` and a one-line reason, and
every other command keeps working. ``PTCLI_STRICT_PLUGINS=1`` makes such a failure fatal.
``PTCLI_PLUGINS=name,name`` loads only the named plugins (empty: none), for tests and debugging.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType

import pluggy

from ptcli.errors import PluginError, UsageError, one_line
from ptcli.plugins import hookspecs
from ptcli.plugins.recipe import Command, Recipe

ENTRY_POINT_GROUP = "ptcli"
#: The core's own commands: name -> ("module:function" under ptcli.cli.commands, one-line help;
#: a group names a Typer app). The CLI registers them from this table, and no plugin command may
#: take one of these names: a command added here is reserved by that alone.
CORE_COMMANDS = {
    "train": ("train_cmd:train", "Train a recipe from a YAML config (resumable, DDP-ready)."),
    "lr-find": ("train_cmd:lr_find", "Find a learning rate: the LR range test, with a plot."),
    "eval": ("train_cmd:evaluate", "Score a trained checkpoint on labelled data."),
    "tune": ("tune_cmd:tune", "Search hyperparameters with Optuna: trials are runs, pruned early, resumable."),
    "export": ("export_cmd:export", "Export a model to ONNX, OpenVINO, torch.export or TorchScript (INT8 too), checked against eager."),
    "benchmark": ("benchmark_cmd:benchmark", "Every format and precision of a model, exported, checked and timed in one table."),
    "export-torchscript": ("export_cmd:export_torchscript", "Export to TorchScript as the book does (deprecated in torch 2.11)."),
    "serve": ("serve_cmd:serve", "Serve a model over HTTP with dynamic batching (/predict, /metrics, a page)."),
    "plugins": ("plugins_cmd:app", None),
    "env": ("env_cmd:env", None),
    "weights": ("weights_cmd:app", None),
}
#: Names no plugin command may take: every core command, and the root's own words.
RESERVED = frozenset(CORE_COMMANDS) | {"version", "help"}


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    module: str
    status: str = "ok"
    error: str | None = None
    recipes: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "status": self.status,
            "error": self.error,
            "recipes": self.recipes,
            "commands": self.commands,
        }


@dataclass
class LoadedPlugins:
    infos: list[PluginInfo]
    recipes: dict[str, Recipe]
    #: command name -> (command, recipe, plugin)
    commands: dict[str, tuple[Command, Recipe, PluginInfo]]

    def failed(self) -> list[PluginInfo]:
        return [info for info in self.infos if info.status != "ok"]

    def recipe(self, name: str) -> Recipe:
        if name not in self.recipes:
            known = ", ".join(sorted(self.recipes)) or "none"
            raise UsageError(f"unknown recipe {name!r}; installed recipes: {known} (see `ptcli plugins`)")
        return self.recipes[name]


def _strict() -> bool:
    return os.environ.get("PTCLI_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes", "on"}


def _allowed(name: str) -> bool:
    only = os.environ.get("PTCLI_PLUGINS")
    if only is None:
        return True
    return name in {part.strip() for part in only.split(",") if part.strip()}


def _entry_points() -> list[metadata.EntryPoint]:
    seen: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        seen.setdefault(ep.name, ep)  # the first on sys.path wins, as for imports
    return sorted(seen.values(), key=lambda ep: ep.name)


def _collect_recipes(pm: pluggy.PluginManager, module: ModuleType) -> list[Recipe]:
    recipes: list[Recipe] = []
    others = [p for p in pm.get_plugins() if p is not module]
    pm.subset_hook_caller("register_recipes", remove_plugins=others)(register=recipes.append)
    for recipe in recipes:
        if not isinstance(recipe, Recipe):
            raise PluginError(f"register() was given {type(recipe).__name__}, not a ptcli.plugins.recipe.Recipe")
    return recipes


def _claim(info: PluginInfo, recipes: list[Recipe], loaded: LoadedPlugins) -> None:
    """Check that the plugin's recipe and command names are free, then record them. A command
    that takes a core command's name is refused (the plugin's status says so) and the rest of
    the plugin loads: the core command stays what users get."""
    refused = []
    for recipe in recipes:
        if recipe.name in loaded.recipes:
            raise PluginError(f"recipe {recipe.name!r} is already provided by another plugin")
        for command in recipe.commands:
            if command.target is None and recipe.predictor is None:
                raise PluginError(f"command {command.name!r} names no target, and recipe {recipe.name!r} declares no "
                                  "predictor to derive it from")
            if command.name in RESERVED:
                refused.append(command.name)
                continue
            if command.name in loaded.commands:
                owner = loaded.commands[command.name][2].name
                raise PluginError(f"command {command.name!r} is already provided by plugin {owner!r}")
    for recipe in recipes:
        loaded.recipes[recipe.name] = recipe
        info.recipes.append(recipe.name)
        for command in recipe.commands:
            if command.name not in RESERVED:
                loaded.commands[command.name] = (command, recipe, info)
                info.commands.append(command.name)
    if refused:
        names = ", ".join(repr(name) for name in refused)
        info.status = "error"
        info.error = (f"plugin {info.name!r} declares {names}, a core command of ptcli: refused "
                      f"(the core's stays; the plugin's other commands load)")


def load_plugins(extra_modules: Iterable[ModuleType] = ()) -> LoadedPlugins:
    """Load every allowed plugin from the entry points (plus ``extra_modules``, for tests)."""
    pm = pluggy.PluginManager("ptcli")
    pm.add_hookspecs(hookspecs)
    loaded = LoadedPlugins(infos=[], recipes={}, commands={})
    sources = [(ep.name, ep) for ep in _entry_points() if _allowed(ep.name)]
    sources += [(module.__name__, module) for module in extra_modules]
    for name, source in sources:
        # An entry point is anything but a module: importlib_metadata's own EntryPoint class
        # comes back from importlib.metadata once some package (mlflow does) installs its finder.
        in_process = isinstance(source, ModuleType)
        if not in_process:
            dist = source.dist
            info = PluginInfo(name, dist.name if dist else "?", dist.version if dist else "?", source.value)
        else:
            info = PluginInfo(name, "(registered in-process)", "", source.__name__)
        loaded.infos.append(info)
        module = None
        try:
            module = source if in_process else source.load()
            pm.register(module, name=name)
            _claim(info, _collect_recipes(pm, module), loaded)
            if info.error is not None and _strict():
                raise PluginError(info.error)
        except Exception as exc:  # the error boundary: a plugin may raise anything
            info.status, info.error = "error", one_line(exc)
            if module is not None and pm.is_registered(module):
                pm.unregister(module)
            if _strict():
                raise PluginError(f"plugin {name!r} ({info.distribution}) failed to load: {info.error}") from exc
    return loaded


_cache: LoadedPlugins | None = None


def get_plugins() -> LoadedPlugins:
    """The plugins of this process, loaded once."""
    global _cache
    if _cache is None:
        _cache = load_plugins()
    return _cache


def reset_plugins() -> None:
    global _cache
    _cache = None


def requested_recipe(checkpoint, recipe_name: str | None, model: str | None, weights) -> Recipe:
    """The recipe a core command (export, serve) works on: the one that wrote ``checkpoint``
    (which then names its model and weights too), else ``--recipe``."""
    from ptcli.models.sidecars import read_sidecar

    if checkpoint is not None:
        if recipe_name is not None or model is not None or weights is not None:
            raise UsageError("CKPT already names its recipe, model and weights; drop --recipe/--model/--weights")
        recipe_name = read_sidecar(checkpoint).get("recipe", "")
    elif recipe_name is None:
        raise UsageError("give a checkpoint, or --recipe R (with --model NAME for another than its default)")
    return get_plugins().recipe(recipe_name)
