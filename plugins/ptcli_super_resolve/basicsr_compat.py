"""Compatibility shims for libraries that lag behind torch. Import them through here only.

basicsr 1.4.2 (the ESRGAN architectures) imports ``torchvision.transforms.functional_tensor``,
which torchvision renamed to ``_functional_tensor`` (and then removed the old name). Every
import of basicsr goes through ``import_basicsr``, which puts the old name back first.

basicsr's package ``__init__`` files import every architecture, dataset, loss, model and
training module (about a second); ptcli needs two architecture files. ``import_basicsr``
registers the ``basicsr`` and ``basicsr.archs`` packages without running those files, so
that only the modules asked for (and what they import) load.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

_OLD_NAME = "torchvision.transforms.functional_tensor"


def install_torchvision_alias() -> None:
    """Make the old module name resolve to torchvision's current module (no-op when it exists)."""
    if _OLD_NAME in sys.modules:
        return
    try:
        importlib.import_module(_OLD_NAME)
    except ModuleNotFoundError:
        sys.modules[_OLD_NAME] = importlib.import_module("torchvision.transforms._functional_tensor")


def _register_bare_packages() -> None:
    import importlib.util

    for name in ("basicsr", "basicsr.archs"):
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.modules[name] = importlib.util.module_from_spec(spec)  # __path__ set, __init__ not run


def import_basicsr(module: str) -> ModuleType:
    """``basicsr.<module>`` (e.g. "archs.rrdbnet_arch"), imported with the shim in place."""
    import warnings

    install_torchvision_alias()
    _register_bare_packages()
    with warnings.catch_warnings():  # basicsr's own imports of deprecated scipy names
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module(f"basicsr.{module}")
