import json
import os
import subprocess
import sys
import textwrap
import types

import pytest
from conftest import REPO, run_ptcli

from ptcli import hookimpl
from ptcli.errors import PluginError
from ptcli.plugins import load_plugins
from ptcli.plugins.recipe import Command, Recipe


def make_dist(root, dist_name, plugin_name, module_name, source):
    """A minimal installed distribution: a module plus a .dist-info with a ptcli entry point."""
    (root / f"{module_name}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist_name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[ptcli]\n{plugin_name} = {module_name}\n")
    return root


@pytest.fixture
def broken_plugin_path(tmp_path):
    return make_dist(tmp_path, "broken-plugin", "broken", "broken_plugin",
                     "raise ImportError(\"No module named 'nope'\")\n")


def with_path(path):
    return {"PYTHONPATH": os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")])}


def test_broken_plugin_is_reported_and_others_keep_working(broken_plugin_path):
    env = with_path(broken_plugin_path)
    listed = run_ptcli("plugins", "--json", env=env)
    assert listed.returncode == 0
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    assert plugins["broken"]["status"] == "error"
    assert plugins["broken"]["error"] == "ImportError: No module named 'nope'"
    assert plugins["broken"]["distribution"] == "broken-plugin"
    assert plugins["classify-image"]["status"] == "ok"
    assert "plugin 'broken' failed to load" in listed.stderr

    helped = run_ptcli("--help", env=env)
    assert helped.returncode == 0 and "classify-image" in helped.stdout

    classified = run_ptcli("classify-image", REPO / "examples" / "cat.jpg", "--top-k", "1", "--json", env=env)
    assert classified.returncode == 0
    assert json.loads(classified.stdout)["predictions"][0]["label"] == "Egyptian cat"


def test_strict_mode_makes_a_broken_plugin_fatal(broken_plugin_path):
    result = run_ptcli("plugins", env={**with_path(broken_plugin_path), "PTCLI_STRICT_PLUGINS": "1"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: plugin 'broken' (broken-plugin) failed to load: ImportError: No module named 'nope'"
    ]


def test_plugin_allow_list(cli, monkeypatch):
    monkeypatch.setenv("PTCLI_PLUGINS", "")
    result = cli("plugins", "--json")
    assert json.loads(result.stdout) == []
    assert cli("classify-image", "x.jpg").exit_code == 2  # no such command


def _plugin(*recipes):
    module = types.ModuleType(f"fake_plugin_{id(recipes)}")

    @hookimpl
    def register_recipes(register):
        for recipe in recipes:
            register(recipe)

    module.register_recipes = register_recipes
    return module


def test_plugin_may_not_take_a_core_command():
    module = _plugin(Recipe(name="thief", help="", commands=(Command("env", "steal", "x:y"),)))
    loaded = load_plugins([module])
    info = loaded.infos[-1]
    assert info.status == "error" and "core command" in info.error
    assert "env" not in loaded.commands


def test_second_plugin_with_the_same_command_is_rejected():
    module = _plugin(Recipe(name="other", help="", commands=(Command("classify-image", "again", "x:y"),)))
    loaded = load_plugins([module])
    assert loaded.infos[-1].status == "error"
    assert "already provided by plugin 'classify-image'" in loaded.infos[-1].error
    assert loaded.commands["classify-image"][2].name == "classify-image"


def test_register_needs_a_recipe_object(monkeypatch):
    monkeypatch.setenv("PTCLI_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="not a ptcli.plugins.recipe.Recipe"):
        load_plugins([_plugin("not a recipe")])


def test_command_whose_module_fails_to_import_is_a_one_line_error(cli):
    module = _plugin(Recipe(name="ghost", help="", commands=(Command("ghost", "missing code", "no_such_module:run"),)))
    assert "ghost" in cli("--help", plugins=[module]).stdout
    result = cli("ghost", plugins=[module])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: cannot load no_such_module:run: ModuleNotFoundError: No module named 'no_such_module'"


@pytest.mark.slow
def test_hello_plugin_installs_and_runs(tmp_path):
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps", "--no-index",
         "--target", str(target), str(REPO / "examples" / "ptcli-hello")],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr
    env = with_path(target)
    listed = json.loads(run_ptcli("plugins", "--json", env=env).stdout)
    hello = next(p for p in listed if p["name"] == "hello")
    assert hello["status"] == "ok" and hello["distribution"] == "ptcli-hello" and hello["commands"] == ["hello"]
    assert "hello" in run_ptcli("--help", env=env).stdout
    result = run_ptcli("hello", "Ada", "--device", "cpu", "--json", env=env)
    assert result.returncode == 0, result.stderr
    import torch

    torch.manual_seed(0)
    expected = torch.nn.Linear(4, 1)(torch.ones(1, 4)).item()
    assert json.loads(result.stdout) == {"greeting": "Hello, Ada!", "device": "cpu", "score": pytest.approx(expected, abs=1e-4)}
    assert run_ptcli("hello", "--device", "cuda:7", env=env).returncode == 2
    requirements = run_ptcli("plugins", "--requirements", env=env).stdout.splitlines()
    assert [line.split("==")[0] for line in requirements] == ["ptcli", "ptcli-hello"]
    assert requirements[1].startswith(f"ptcli-hello=={hello['version']}") and "# installed from file://" in requirements[1]


def test_model_registry_names_fixed_and_resolved_models():
    from ptcli.errors import UsageError
    from ptcli.plugins.recipe import ModelRegistry, ModelSpec

    registry = ModelRegistry("toy")
    registry.add(ModelSpec(name="small", build=lambda: "small"))
    registry.add_resolver(lambda name: ModelSpec(name=name, build=lambda: name) if name.startswith("hub/") else None,
                          lambda: ["hub/<name>"])
    assert registry.names() == ["small", "hub/<name>"]
    assert registry.get("hub/anything").build() == "hub/anything"
    with pytest.raises(UsageError, match=r"unknown model 'smal' for toy; did you mean small\? known models: small, hub/<name>"):
        registry.get("smal")


def test_second_plugin_with_the_same_recipe_name_is_rejected():
    module = _plugin(Recipe(name="classify-image", help="", commands=()))
    loaded = load_plugins([module])
    assert loaded.infos[-1].status == "error"
    assert loaded.infos[-1].error == "recipe 'classify-image' is already provided by another plugin"


def test_catch_all_resolvers_come_last():
    from ptcli.plugins.recipe import ModelRegistry, ModelSpec

    registry = ModelRegistry("r")
    registry.add_resolver(lambda name: ModelSpec(name=name, build=lambda: "any", description="catch-all"), catch_all=True)
    registry.add_resolver(lambda name: ModelSpec(name=name, build=lambda: "timm", description="timm")
                          if name.startswith("timm/") else None)
    assert registry.find("timm/x").description == "timm"
    assert registry.find("org/x").description == "catch-all"
    assert registry.find("org/x", catch_all=False) is None
    assert registry.find("timm/x", resolvers=False) is None


@pytest.mark.parametrize("core", sorted(__import__("ptcli.plugins", fromlist=["CORE_COMMANDS"]).CORE_COMMANDS))
def test_no_plugin_replaces_a_core_command_and_the_rest_of_it_loads(cli, core):
    """Every core command (serve, export and export-torchscript included) is refused to a
    plugin, in one line naming the plugin and the command; the plugin's other command loads
    and the core's command is what runs."""
    module = _plugin(Recipe(name="thief", help="", commands=(Command(core, "steal", "x:y"), Command("honest", "fine", "x:y"))))
    listed = json.loads(cli("plugins", "--json", plugins=[module]).stdout)
    info = next(row for row in listed if row["name"] == module.__name__)
    assert info["status"] == "error" and info["commands"] == ["honest"] and info["recipes"] == ["thief"]
    assert f"declares '{core}', a core command of ptcli" in info["error"] and module.__name__ in info["error"]
    help_text = cli(core, "--help", plugins=[module])
    assert help_text.exit_code == 0 and "steal" not in help_text.stdout
    assert "honest" in cli("--help", plugins=[module]).stdout


def test_the_core_commands_are_the_ones_registered():
    import typer

    from ptcli.cli import LazyCommand, app
    from ptcli.plugins import CORE_COMMANDS, RESERVED

    commands = typer.main.get_command(app).commands
    assert {name for name, command in commands.items() if not isinstance(command, LazyCommand)} == set(CORE_COMMANDS) <= RESERVED


def test_entry_points_of_another_metadata_library_load_too(monkeypatch):
    """Once a package installs importlib_metadata's finder (mlflow does), importlib.metadata
    hands back importlib_metadata's EntryPoint objects: the plugins must load all the same."""
    import ptcli.plugins as manager

    real = manager._entry_points()

    class ForeignEntryPoint:  # an entry point of another class, with the same interface
        def __init__(self, ep):
            self.name, self.value, self.dist, self.load = ep.name, ep.value, ep.dist, ep.load

    monkeypatch.setattr(manager, "_entry_points", lambda: [ForeignEntryPoint(ep) for ep in real])
    loaded = load_plugins()
    assert {info.name for info in loaded.infos} == {ep.name for ep in real}
    assert all(info.status != "error" for info in loaded.infos), [(i.name, i.error) for i in loaded.infos]
    assert "classify-image" in loaded.recipes
