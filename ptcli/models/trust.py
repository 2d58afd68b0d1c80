"""What a model file may choose: never code. An export's sidecar names its runtime (the wrapper
a recipe's command runs it through) by a key that the recipe declares (``Recipe.runtimes``),
and the modules that register its custom operators are the recipe's own (``Recipe.model_ops``),
never modules named by the file. Anything else in a sidecar is refused with the file's name,
before any import."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ptcli.errors import CheckpointError, PluginError


def _declared(recipe) -> Mapping[str, object]:
    return dict(getattr(recipe, "runtimes", None) or {})


def export_code(recipe, meta: dict, path: str | Path) -> tuple[object | None, tuple[str, ...]]:
    """(the runtime reference the recipe declares under the sidecar's key, or None; the
    modules to import before the file loads). A CheckpointError when the sidecar names code
    the recipe did not declare."""
    runtimes = _declared(recipe)
    ops = tuple(getattr(recipe, "model_ops", ()) or ())
    name = getattr(recipe, "name", "?")
    runtime = meta.get("runtime")
    chosen = None
    if runtime is not None:
        if not isinstance(runtime, str):
            raise CheckpointError(f"{path}: its sidecar's \"runtime\" is not a name; a model file never chooses code")
        if runtime in runtimes:
            chosen = runtimes[runtime]
        elif runtime in runtimes.values():  # an export written before runtimes had keys: the same declared code
            chosen = runtime
        else:
            known = ", ".join(sorted(runtimes)) or "none"
            raise CheckpointError(f"{path}: its sidecar names the runtime {runtime[:80]!r}, which recipe {name} does not "
                                  f"declare (its runtimes: {known}); a model file never chooses code, so it is refused")
    imports = meta.get("imports") or []
    if not isinstance(imports, list) or any(not isinstance(module, str) or module not in ops for module in imports):
        shown = ", ".join(repr(m)[:60] for m in imports if m not in ops) if isinstance(imports, list) else repr(imports)[:60]
        raise CheckpointError(f"{path}: its sidecar asks to import {shown}, which recipe {name} does not declare "
                              f"(its model ops: {', '.join(ops) or 'none'}); a model file never chooses code, so it is refused")
    return chosen, ops


def runtime_key(recipe, runtime) -> str | None:
    """The key an export's sidecar stores for its recipe's runtime (an Exportable may name it
    by key or by the reference the recipe declares under that key)."""
    if runtime is None:
        return None
    runtimes = _declared(recipe)
    if runtime in runtimes:
        return runtime
    for key, ref in runtimes.items():
        if ref == runtime:
            return key
    raise PluginError(f"recipe {getattr(recipe, 'name', '?')}'s export names the runtime {runtime!r}, which it does not "
                      f"declare: add runtimes={{'NAME': {runtime!r}}} to its Recipe and name it by NAME")
