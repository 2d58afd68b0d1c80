"""Opening a zip archive from a stranger (a .pt2 or TorchScript export): readable, and not a
bomb. The files an export holds are stored, or barely compressed, so an archive whose directory
announces files many times its own size is refused before any of them is read."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

from ptcli.errors import CheckpointError

#: An archive whose files inflate to more than this many times its size (plus a MiB) is a bomb.
INFLATION = 2


def open_checked(path: Path, what: str, refuse: Callable[[Path, str], Exception]) -> zipfile.ZipFile:
    """``path`` open as a zip archive; a CheckpointError when it is not one (``what``, in the
    message), ``refuse(path, why)`` when its files would inflate out of proportion."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path} is not a readable {what}: {exc}") from exc
    size = path.stat().st_size
    inflated = sum(info.file_size for info in archive.infolist())
    if inflated > INFLATION * size + 2**20:
        archive.close()
        raise refuse(path, f"its files inflate to {inflated / 2**20:.0f} MiB from {size / 2**20:.1f} MiB")
    return archive
