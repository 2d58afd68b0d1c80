"""Compatibility shims for libraries that lag behind torch. Import them through here only.

basicsr 1.4.2 (the ESRGAN architectures) imports ``torchvision.transforms.functional_tensor``,
which torchvision renamed to ``_functional_tensor`` (and then removed the old name). Every
import of basicsr goes through ``import_basicsr``, which puts the old name back first.
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


def import_basicsr(module: str) -> ModuleType:
    """``basicsr.<module>`` (e.g. "archs.rrdbnet_arch"), imported with the shim in place."""
    import warnings

    install_torchvision_alias()
    with warnings.catch_warnings():  # basicsr's own imports of deprecated scipy names
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module(f"basicsr.{module}")
