"""The core's layout: its folders are floors, and no module imports from a floor above its own;
the core names no recipe; the flat layout's module names still import, with a warning."""

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from conftest import REPO

#: Package prefix -> floor (the longest prefix that matches decides).
FLOORS = {
    "ptcli.errors": 1, "ptcli.storage": 1, "ptcli.output": 1, "ptcli.files": 1, "ptcli.distributed": 1, "ptcli.devices": 1, "ptcli.refs": 1,
    "ptcli.allocator": 1,
    "ptcli.models": 2,
    "ptcli.vision": 3, "ptcli.attacks": 3, "ptcli.plugins": 3, "ptcli.plugins.recipe": 3, "ptcli.plugins.hookspecs": 3,
    "ptcli.inference": 4,
    "ptcli.training": 5, "ptcli.exporting": 5, "ptcli.serving": 5, "ptcli.video": 5,
    # A video's frame is a plain value that image reading (floor 3) accepts.
    "ptcli.video.frames": 1,
    "ptcli.plugins.capabilities": 6, "ptcli.plugins.check": 6, "ptcli.plugins.template": 6,
    "ptcli.plugins.tiny_inputs": 6,
    "ptcli.cli": 7,
    # The test kit runs the command line in-process: it stands on top of everything.
    "ptcli.plugins.testing": 8,
}
#: The package root and the old names' aliases stand outside the floors.
OUTSIDE = {"ptcli", "ptcli.__main__", "ptcli._moved"}


def floor(module: str) -> int:
    matches = [prefix for prefix in FLOORS if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is on no floor: add its package to FLOORS"
    return FLOORS[max(matches, key=len)]


def core_modules():
    for path in sorted((REPO / "ptcli").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def imported(name: str, path: Path):
    """Every module ``path`` imports (at the top or inside functions), resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            yield base
            for alias in node.names:  # `from ptcli.models import embedded` imports a module
                yield f"{base}.{alias.name}"


def test_no_module_imports_from_a_floor_above_its_own():
    known = {name for name, _ in core_modules()}
    upward = []
    for name, path in core_modules():
        if name in OUTSIDE:
            continue
        for target in imported(name, path):
            if target in known and target not in OUTSIDE and floor(target) > floor(name):
                upward.append(f"{name} (floor {floor(name)}) imports {target} (floor {floor(target)})")
    assert not upward, "\n".join(upward)


def _defined(path: Path) -> set[str]:
    """The names a module binds at its top level."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name)}
    return names


def _all_modules():
    """Every module of the core and of the built-in recipes, by name."""
    yield from core_modules()
    for root in sorted((REPO / "plugins").glob("ptcli_*")):
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root.parent).with_suffix("").parts
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def test_no_circle_of_imports():
    """No module imports one that imports it back, however many steps away and whether at the
    top or inside a function: what two modules both need lives below both."""
    modules = dict(_all_modules())
    graph = {name: {target for target in imported(name, path) if target in modules and target != name
                    and not name.startswith(target + ".")} for name, path in modules.items()}
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert len(graph) > 200 and not circles, circles


def test_every_name_imported_from_the_core_is_there():
    """Each `from ptcli.X import name` (and relative import) in the core, the recipes, tests and
    benchmarks names a module of the core or something it defines: no import is left behind
    by a move."""
    modules = dict(core_modules())
    missing = []
    sources = [(name, path) for name, path in core_modules()]
    for folder in ("plugins", "tests", "bench"):
        sources += [(None, path) for path in (REPO / folder).rglob("*.py") if "build" not in path.relative_to(REPO).parts]
    for name, path in sources:
        package = None if name is None else (name if path.name == "__init__.py" else name.rpartition(".")[0])
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or (node.level and package is None):
                continue
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "ptcli" or base == "ptcli._moved":
                continue
            if base not in modules:
                missing.append(f"{path.relative_to(REPO)}: no module {base}")
                continue
            defined = _defined(modules[base])
            missing += [f"{path.relative_to(REPO)}: {base} has no {alias.name}" for alias in node.names
                        if alias.name != "*" and alias.name not in defined and f"{base}.{alias.name}" not in modules]
    assert not missing, "\n".join(missing)


def test_the_core_names_no_recipe():
    recipes = {path.name for path in (REPO / "plugins").iterdir() if path.name.startswith("ptcli_")}
    naming = [f"{name}: {target}" for name, path in core_modules() if name != "ptcli._moved"
              for target in imported(name, path) if target.split(".")[0] in recipes]
    assert not naming, naming


def test_nothing_of_ptclis_own_imports_an_old_name():
    from ptcli._moved import MOVED

    old = []
    for folder in ("ptcli", "plugins", "tests", "bench", "examples"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name in ("_moved.py", "test_layout.py") or "build" in path.relative_to(REPO).parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] + [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) and node.module else []
                old += [f"{path.relative_to(REPO)}: {n}" for n in names if n in MOVED]
    assert not old, old


@pytest.mark.parametrize("old, new, name", [("ptcli.recipe", "ptcli.plugins.recipe", "Recipe"),
                                            ("ptcli.testing", "ptcli.plugins.testing", "run_process"),
                                            ("ptcli.loading", "ptcli.models.loading", "load_model"),
                                            ("ptcli.batching", "ptcli.inference.batching", "run_batched"),
                                            ("ptcli.compat", "ptcli_super_resolve.basicsr_compat", "import_basicsr")])
def test_an_old_name_imports_the_moved_module_with_a_warning(old, new, name):
    code = (f"import warnings, importlib; warnings.simplefilter('always')\n"
            f"with warnings.catch_warnings(record=True) as caught:\n"
            f"    import {old} as old\n"
            f"new = importlib.import_module({new!r})\n"
            f"assert old is new and getattr(old, {name!r}) is getattr(new, {name!r}), (old, new)\n"
            f"assert new.__spec__.name == {new!r}, new.__spec__\n"
            f"moved = [str(w.message) for w in caught if w.category is DeprecationWarning and 'has moved' in str(w.message)]\n"
            f"assert moved == [{old!r} + ' has moved to ' + {new!r} + '; import it from there (the old name goes in a later release)'], moved\n"
            f"assert caught[0].filename == '<string>', caught[0].filename\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_split_checkpoints_module_gathers_its_names():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ptcli.checkpoints as old
    from ptcli.files import atomic_write
    from ptcli.models.checkpoints import save_checkpoint
    from ptcli.models.sidecars import read_sidecar
    from ptcli.models.state_dicts import load_state_dict

    assert (old.save_checkpoint, old.read_sidecar, old.load_state_dict, old.atomic_write) == \
        (save_checkpoint, read_sidecar, load_state_dict, atomic_write)
