"""The sidecar inside an exported file: ONNX metadata (``metadata_props["ptcli.json"]``), an
extra file in the zip archive that torch.export.save and torch.jit.save write
(``<archive>/extra/ptcli.json``), or an OpenVINO IR's runtime info (``<rt_info><ptcli><json
value="..."/>`` in the .xml). Read without importing torch or OpenVINO, so that a command
checks an export (its recipe, that it is one) before the slow imports."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from ptcli.errors import CheckpointError, UsageError

FORMAT = "ptcli-export"
FORMAT_VERSION = 1
#: Export format -> file ending.
SUFFIXES = {"onnx": ".onnx", "exported-program": ".pt2", "torchscript": ".pt", "openvino": ".xml"}
#: Where the sidecar sits in an OpenVINO IR's runtime info.
OPENVINO_RT_INFO = ("ptcli", "json")
KEY = "ptcli.json"
#: The largest sidecar read: a crafted archive's could inflate to gigabytes.
MAX_SIDECAR_BYTES = 16 * 2**20


def looks_like_export(path: str | Path) -> bool:
    return Path(path).suffix in SUFFIXES.values()


def read(path: str | Path) -> dict:
    """The sidecar an export carries; a usage error when the file is not a ptcli export."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"export not found: {path}")
    try:
        text = {".onnx": _read_onnx, ".xml": _read_openvino}.get(path.suffix, _read_zip)(path)
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise CheckpointError(f"{path} is not a readable {path.suffix} file: {exc}") from exc
    if text is None:
        raise UsageError(f"{path} is not a ptcli export (it carries no {KEY}); make one with `ptcli export`")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: its {KEY} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise CheckpointError(f"{path}: its {KEY} is nested too deeply to be a sidecar") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UsageError(f"{path} is not a ptcli export (its {KEY} has no \"format\": \"{FORMAT}\")")
    return meta


def _read_zip(path: Path) -> str | None:
    if path.suffix == ".pt2":  # refused before anything else is read, if it could run code
        from ptcli.models import pt2

        pt2.check(path)
    elif path.suffix == ".pt":
        from ptcli.models import torchscript

        torchscript.check(path)
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.filename.endswith(f"extra/{KEY}"):
                if info.file_size > MAX_SIDECAR_BYTES:
                    raise CheckpointError(f"{path}: its {KEY} is {info.file_size / 2**20:.0f} MiB, over the "
                                          f"{MAX_SIDECAR_BYTES / 2**20:.0f} MiB a sidecar may take; refused")
                with archive.open(info) as entry:  # read no further than the directory says, whatever it says
                    return entry.read(MAX_SIDECAR_BYTES + 1)[:MAX_SIDECAR_BYTES].decode("utf-8")
    return None


def _read_onnx(path: Path) -> str | None:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and onnx's own, for a file that is not ONNX
        raise ValueError(f"not an ONNX model ({type(exc).__name__})") from exc
    for prop in model.metadata_props:
        if prop.key == KEY:
            return prop.value
    return None


def _read_openvino(path: Path) -> str | None:
    import xml.etree.ElementTree as ElementTree

    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as exc:
        raise ValueError(f"not an OpenVINO IR ({exc})") from exc
    entry = root.find("rt_info/" + "/".join(OPENVINO_RT_INFO))
    return None if entry is None else entry.get("value")


def companions(path: Path) -> list[Path]:
    """The files an export needs beside it: an OpenVINO IR's weights (.bin)."""
    return [path.with_suffix(".bin")] if path.suffix == ".xml" else []


def write_onnx(path: Path, meta: dict) -> None:
    """Add the sidecar to an ONNX file, keeping it one self-contained file."""
    import onnx

    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = KEY, json.dumps(meta)
    onnx.save(model, str(path))
