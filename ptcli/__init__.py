"""ptcli: PyTorch task recipes from the command line.

This package must stay cheap to import: `ptcli --help` loads it and every plugin's
top-level module, so nothing here may import torch or another heavy library.
"""

__version__ = "0.1.0"

from ptcli.hookspecs import hookimpl  # noqa: E402  (plugins write `from ptcli import hookimpl`)

__all__ = ["__version__", "hookimpl"]
