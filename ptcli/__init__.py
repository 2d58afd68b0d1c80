"""ptcli: PyTorch task recipes from the command line.

This package must stay cheap to import: `ptcli --help` loads it and every plugin's
top-level module, so nothing here may import torch or another heavy library.

The layout, floor by floor (a module imports only from its own floor or those below):

1. foundation: ``errors``, ``output``, ``files``, ``refs``, ``distributed``, ``devices``
2. ``models``: weights, checkpoints and their metadata, loading a recipe's model
3. ``vision`` (what image recipes share) and the plugin declarations (``plugins.recipe``, the
   manager in ``plugins``)
4. ``inference``: the one inference contract and the loop derived from it
5. ``training``, ``exporting``, ``serving``
6. what recipes offer each other and a plugin author's tools (``plugins.capabilities``,
   ``check``, ``template``, ``tiny_inputs``)
7. ``cli``: the command line
8. ``plugins.testing``: the test kit, which runs the command line in-process

tests/test_layout.py holds the code to this.
"""

__version__ = "0.1.0"

import sys as _sys  # noqa: E402
import time as _time  # noqa: E402

#: Where --timings counts start-up from when the system cannot say when the process began.
IMPORTED_AT = _time.perf_counter()


def _interrupted_while_starting(_signum, _frame) -> None:
    """Ctrl-C to the `ptcli` command before its own handling is in place (the imports take a
    tenth of a second and more): an interrupted run, said in one line, not a traceback from
    whichever import it cut short. Nothing is open yet to be closed."""
    import os

    if "--json" in _sys.argv[1:]:
        os.write(1, b'{"error": "interrupted", "exit_code": 130}\n')
    else:
        os.write(2, b"error: interrupted\n")
    os._exit(130)


def _take_ctrl_c_while_starting() -> None:
    # The built-in _signal, not signal: importing signal builds its enums (a millisecond of
    # Python code), and a Ctrl-C then was a traceback from inside this package (seen in CI).
    import _signal

    if _signal.getsignal(_signal.SIGINT) in (_signal.SIG_IGN, _signal.default_int_handler):
        _signal.signal(_signal.SIGINT, _interrupted_while_starting)


# Only as the command (the console script, or `python -m ptcli` while runpy imports this
# package), not in its spawned children (serve's replicas set their own, from the command's
# argv): a program that imports ptcli keeps its own Ctrl-C. ptcli.cli.app.honour_ctrl_c
# replaces the handler once the command line has loaded.
if (_sys.argv[:1] == ["-m"] or _sys.argv[0].rsplit("/", 1)[-1] == "ptcli") and "multiprocessing" not in _sys.modules:
    _take_ctrl_c_while_starting()


def _leave_the_current_folder() -> None:
    """`python -m ptcli` (torchrun's form) puts the current folder first on the import path, and
    a file beside a stranger's model named like a module ptcli imports (pluggy, numpy, a
    recipe's model ops) would run. runpy imports this package while ``sys.argv[0]`` is still
    "-m", before any of ptcli's own imports; nothing ptcli needs comes from the current folder."""
    import os

    here = os.getcwd()
    _sys.path[:] = [entry for entry in _sys.path if entry not in ("", ".") and os.path.abspath(entry) != here]


if _sys.argv[:1] == ["-m"]:
    _leave_the_current_folder()

from ptcli import _moved  # noqa: E402

_moved.install()  # the flat layout's module names, for a release

from ptcli.plugins.hookspecs import hookimpl  # noqa: E402  (plugins write `from ptcli import hookimpl`)

__all__ = ["__version__", "hookimpl"]
