"""Writing files so that a failure never leaves half a file: every checkpoint, export, image
and report ptcli writes goes through ``atomic_write``."""

from __future__ import annotations

import errno
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
        if exc.errno == errno.ENOSPC:
            raise PtcliError(f"no space left on device: {target}") from exc
        raise PtcliError(f"cannot write {target}: {exc.strerror or flatten(exc, 200)}") from exc


def _full(folder: Path) -> bool:
    """Whether the file system of ``folder`` has (next to) no room left: torch.save and
    safetensors say a write failed without saying why ("[enforce fail at inline_container.cc]")."""
    import shutil

    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


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
            except (RuntimeError, OSError) as exc:  # torch.save and safetensors report a failed write so
                if _full(target.parent):  # asked before the half-written file is removed and frees its room
                    raise OSError(errno.ENOSPC, "no space left on device") from exc
                if isinstance(exc, OSError):
                    raise
                raise OSError(flatten(exc, 200)) from exc
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it private; the result is like any new file
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
