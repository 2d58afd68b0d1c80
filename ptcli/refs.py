"""Lazy references: a recipe names its code as "package.module:attribute", imported only
when a command needs it (which keeps `ptcli --help` fast however many plugins are installed)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ptcli.errors import PluginError

#: A lazy reference: "package.module:attribute", or the object itself.
Ref = str | Callable[..., Any]


def load_ref(ref: Ref) -> Any:
    """Import the object a "module:attribute" reference names (objects pass through)."""
    if not isinstance(ref, str):
        return ref
    module_name, _, attribute = ref.partition(":")
    if not module_name or not attribute:
        raise PluginError(f"bad reference {ref!r}: expected 'package.module:attribute'")
    try:
        target = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except Exception as exc:  # a plugin's code may raise anything on import
        from ptcli.errors import one_line

        raise PluginError(f"cannot load {ref}: {one_line(exc)}") from exc
    return target
