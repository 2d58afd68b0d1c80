"""Writing files so that a failure never leaves half a file: every checkpoint, export, image
and report ptcli writes goes through ``atomic_write``."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from ptcli.errors import PtcliError, flatten


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextmanager
def writing(target: Path):
    """A failed write (a full disk, a read-only or missing folder, no permission) as one line."""
    try:
        yield
    except OSError as exc:
        raise PtcliError(f"cannot write {target}: {exc.strerror or flatten(exc, 200)}") from exc


def atomic_write(target: Path, write: Callable[[str], None]) -> None:
    """Write through a temporary file and a rename: ``target`` is the old file or the new one,
    never half of either, whatever happens (a full disk, Ctrl-C, a crash)."""
    with writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            try:
                write(tmp)
            except RuntimeError as exc:  # torch.save and safetensors report a failed write so
                raise OSError(flatten(exc, 200)) from exc
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it private; the result is like any new file
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
