"""`ptcli plugins new NAME`: a working plugin from the template in ptcli/data/plugin_template/
(a Predictor, from which its command and serve derive; a training task; a recipe YAML; tests
that use ptcli.plugins.testing)."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path
from string import Template

from ptcli.errors import UsageError

#: Template file -> where it goes in the new plugin ($module is the package's name).
LAYOUT = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "__init__.py.tmpl": "$module/__init__.py",
    "model.py.tmpl": "$module/model.py",
    "predictor.py.tmpl": "$module/predictor.py",
    "training.py.tmpl": "$module/training.py",
    "recipe.yaml.tmpl": "recipes/$name.yaml",
    "conftest.py.tmpl": "tests/conftest.py",
    "test_plugin.py.tmpl": "tests/test_$module.py",
}


def generate(name: str, parent: Path) -> Path:
    if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
        raise UsageError(f"plugin name {name!r}: use lower-case letters, digits and dashes, starting with a letter")
    from ptcli.plugins import RESERVED

    if name in RESERVED:
        raise UsageError(f"{name!r} is one of ptcli's own commands; choose another name")
    folder = Path(parent) / f"ptcli-{name}"
    if folder.exists():
        raise UsageError(f"{folder} exists; choose another name or -o DIR")
    values = {"name": name, "module": "ptcli_" + name.replace("-", "_")}
    source = files("ptcli") / "data" / "plugin_template"
    for template, target in LAYOUT.items():
        path = folder / Template(target).substitute(values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(source.joinpath(template).read_text(encoding="utf-8")).substitute(values), encoding="utf-8")
    return folder
