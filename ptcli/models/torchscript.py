"""A TorchScript archive checked before torch.jit.load: its data is unpickled by TorchScript's
own unpickler (tensors and TorchScript objects only), but its code is a program, and
TorchScript's operators include ``torch.save`` (write any file: a ``.pth`` line in
site-packages runs at the next Python start) and ``torch.from_file`` (read any file). ptcli
refuses an archive whose code calls an operator outside the namespaces models compute with, or
one of those, and one whose files inflate out of proportion to its size."""

from __future__ import annotations

import re
from pathlib import Path

from ptcli.errors import CheckpointError

from .archives import open_checked

#: Operators that touch files or load code, as TorchScript's code writes them.
_FORBIDDEN = re.compile(r"(?<![\w.])(?:torch|ops\.aten|torch\.ops\.aten)\.(save|from_file|_from_file|load|jit\.load)\s*\(")
#: Operator namespaces that models compute with.
_NAMESPACES = {"aten", "prim", "prims", "quantized", "torchvision", "_quantized"}
#: An operator call in TorchScript's code: ``ops.NAMESPACE.op(`` (not a type's path, such as
#: ``__torch__.torchvision.ops.feature_pyramid_network.LastLevelMaxPool``).
_NAMESPACE = re.compile(r"(?<![\w.])(?:torch\.)?ops\.(\w+)\.\w+\s*\(")
_MAX_CODE_BYTES = 64 * 2**20


def check(path: str | Path) -> None:
    path = Path(path)
    with open_checked(path, f"{path.suffix} file", _refuse) as archive:
        code = [info for info in archive.infolist() if "/code/" in info.filename and info.filename.endswith(".py")]
        if sum(info.file_size for info in code) > _MAX_CODE_BYTES:
            raise _refuse(path, "its code is larger than any model's")
        for info in code:
            text = archive.read(info).decode("utf-8", "replace")
            forbidden = _FORBIDDEN.search(text)
            if forbidden:
                raise _refuse(path, f"its code calls {forbidden.group(1)}(), which touches files")
            for namespace in _NAMESPACE.findall(text):
                if namespace not in _NAMESPACES:
                    raise _refuse(path, f"its code calls operators of {namespace!r}, which ptcli does not load")


def _refuse(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path} is refused: {why}; ptcli loads TorchScript whose code only computes "
                           "(`ptcli export --format torchscript` makes it)")
