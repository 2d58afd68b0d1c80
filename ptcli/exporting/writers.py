"""Writing one export: ONNX (torch.onnx, dynamo or the tracing exporter), an ExportedProgram
(torch.export.save), TorchScript (torch.jit.trace or script) or an OpenVINO IR (OpenVINO's
own converter, from the ONNX file), with the sidecar inside."""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from pathlib import Path

from ptcli.errors import PtcliError, UsageError, flatten

from ptcli.models import embedded
from .spec import Exportable

#: The opset the ONNX files get unless --opset says otherwise (onnxruntime 1.20+ runs it).
DEFAULT_OPSET = 18


def example_batch(batch: int | None) -> int:
    """The batch the exporter traces with: never 1 for a dynamic batch, which torch.export
    would specialise to a constant (its 0/1 rule), leaving a file that takes one input only."""
    return 2 if batch is None else batch


def dynamic_dims(exportable: Exportable, batch: int | None) -> dict[str, dict[int, str]]:
    """{tensor name: {axis: dimension name}}, the batch included when it is dynamic."""
    dims: dict[str, dict[int, str]] = {}
    for name in (*exportable.input_names, *exportable.output_names):
        axes = dict(exportable.dynamic.get(name, {}))
        if batch is None and exportable.batched:
            axes[0] = "batch"
        if axes:
            dims[name] = axes
    return dims


def _torch_export_shapes(exportable: Exportable, batch: int | None):
    from torch.export import Dim

    named: dict[str, object] = {}
    shapes = []
    dims = dynamic_dims(exportable, batch)
    for name in exportable.input_names:
        axes = dims.get(name, {})
        shapes.append({axis: named.setdefault(label, _dim(exportable, label)) for axis, label in axes.items()} or None)
    return tuple(shapes)


def _dim(exportable: Exportable, label: str):
    from torch.export import Dim

    multiple = exportable.dim_multiples.get(label, 1)
    bounds = _bounds(exportable, label)
    if multiple == 1:
        return Dim(label, **bounds)
    base = Dim(f"{label}_blocks", min=max(1, -(-bounds["min"] // multiple)), max=bounds["max"] // multiple)
    return multiple * base


def _bounds(exportable: Exportable, label: str) -> dict:
    low, high = exportable.dim_bounds.get(label, (1, 65536))
    return {"min": low, "max": high}


@contextlib.contextmanager
def quiet_exporter():
    """The exporters print their progress on stdout, which belongs to results: drop it (kept on
    stderr with PTCLI_DEBUG=1), and keep torch's warnings about its own internals out of the way."""
    import io
    import os

    debug = os.environ.get("PTCLI_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}
    with contextlib.redirect_stdout(sys.stderr if debug else io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*were assigned during export")  # nn.RNN's flat weights
        yield


def write(exportable: Exportable, fmt: str, path: Path, example: tuple, meta: dict, *, batch: int | None,
          opset: int | None, method: str, on_onnx=None) -> str:
    """Write the export of ``exportable`` to ``path``; returns the exporter's name. ``on_onnx``:
    for OpenVINO, a step run on the intermediate ONNX file before it is converted (INT8's
    quantization), returning what it did."""
    import torch

    module = exportable.module
    try:
        with torch.no_grad(), quiet_exporter():
            if fmt == "onnx":
                return _onnx(exportable, path, example, meta, batch=batch, opset=opset or DEFAULT_OPSET)
            if fmt == "openvino":
                return _openvino(exportable, path, example, meta, batch=batch, opset=opset or DEFAULT_OPSET, on_onnx=on_onnx)
            if fmt == "exported-program":
                program = torch.export.export(module, example, dynamic_shapes=_torch_export_shapes(exportable, batch), strict=False)
                torch.export.save(program, str(path), extra_files={embedded.KEY: json.dumps(meta)})
                return "torch.export"
            scripted = _torchscript(exportable, example, method)
            torch.jit.save(scripted, str(path), _extra_files={embedded.KEY: json.dumps(meta)})
            return f"torch.jit.{method}"
    except (PtcliError, KeyboardInterrupt):
        raise
    except _StepFailed as failed:  # on_onnx's own error, not the converter's
        raise failed.__cause__ from None
    except Exception as exc:  # the exporters raise anything; the user needs to know which step and why
        what = {"onnx": f"torch.onnx ({exportable.onnx_exporter} exporter)", "exported-program": "torch.export",
                "torchscript": f"torch.jit.{method}", "openvino": "OpenVINO's converter"}[fmt]
        raise PtcliError(f"{what} could not export {meta.get('model') or 'the model'}: {flatten(exc, 300)}") from exc


def _onnx(exportable: Exportable, path: Path, example: tuple, meta: dict, *, batch: int | None, opset: int) -> str:
    import torch

    names = dict(input_names=list(exportable.input_names), output_names=list(exportable.output_names))
    if exportable.onnx_exporter == "dynamo":
        torch.onnx.export(exportable.module, example, str(path), dynamo=True, external_data=False, opset_version=opset,
                          dynamic_shapes=_torch_export_shapes(exportable, batch), **names)
        exporter = "torch.onnx (dynamo)"
    else:
        torch.onnx.export(exportable.module, example, str(path), dynamo=False, opset_version=opset,
                          dynamic_axes=dynamic_dims(exportable, batch), **names)
        exporter = "torch.onnx (TorchScript-based)"
    if Path(str(path) + ".data").exists():  # a model over protobuf's 2 GB limit
        raise UsageError("the model is over ONNX's 2 GB single-file limit; this export needs external data, which ptcli does not write")
    embedded.write_onnx(path, meta)
    return exporter


class _StepFailed(Exception):
    """Carries an error of write's on_onnx step past its handler for the exporters' errors."""


def _openvino(exportable: Exportable, path: Path, example: tuple, meta: dict, *, batch: int | None, opset: int,
              on_onnx=None) -> str:
    """ONNX first (the route OpenVINO documents for models torch.export cannot take whole, and
    the one every ptcli recipe exports through), then OpenVINO's converter; weights stay fp32
    unless the export is --half (OpenVINO's save would halve them silently)."""
    from ptcli.models.embedded import OPENVINO_RT_INFO
    from ptcli.models.exported import require

    openvino = require("openvino")

    onnx_path = path.with_suffix(".onnx")  # in the export's staging folder, under the export's name
    exporter = _onnx(exportable, onnx_path, example, meta, batch=batch, opset=opset)
    if on_onnx is not None:
        try:
            exporter += ", then " + on_onnx(onnx_path)
        except Exception as exc:
            raise _StepFailed() from exc
    model = openvino.convert_model(str(onnx_path))
    model.set_rt_info(json.dumps(meta), list(OPENVINO_RT_INFO))
    openvino.save_model(model, str(path), compress_to_fp16=bool(meta.get("half")))
    onnx_path.unlink()
    return f"openvino.convert_model {openvino.__version__.split('-')[0]} from {exporter}"


def _torchscript(exportable: Exportable, example: tuple, method: str):
    import torch

    if method not in exportable.torchscript_methods:
        raise UsageError(f"{exportable.meta.get('recipe')} exports TorchScript with --method "
                         f"{' or '.join(exportable.torchscript_methods)} only, not {method}")
    if method == "script":
        return torch.jit.script(exportable.scriptable or exportable.module)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        traced = torch.jit.trace(exportable.module, example, check_trace=False)
    from ptcli.output import warn

    # The book's caveat: a trace records one path through the code. Say where it may not hold.
    for item in {str(w.message).split("\n")[0] for w in caught if issubclass(w.category, torch.jit.TracerWarning)}:
        warn(f"trace: {flatten(item, 200)}")
    return traced
