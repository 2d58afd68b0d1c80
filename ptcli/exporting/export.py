"""One export from start to finish: the recipe's Exportable, the file written beside its
final name, loaded back and checked, then renamed into place (a failed check leaves nothing)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from ptcli.errors import PtcliError, UsageError

from ptcli.models import embedded
from .spec import Exportable

#: Formats whose runtimes compute in bf16 (OpenVINO on CPUs with bf16 units; torch for the others).
BF16_FORMATS = ("openvino", "exported-program", "torchscript")


def _tensor_entries(names, tensors, dims: dict) -> list[dict]:
    entries = []
    for index, name in enumerate(names):
        tensor = tensors[index] if index < len(tensors) else None
        shape = list(tensor.shape) if tensor is not None else []
        for axis, label in dims.get(name, {}).items():
            if axis < len(shape):
                shape[axis] = label
        entries.append({"name": name, "shape": shape, "dtype": str(tensor.dtype).replace("torch.", "") if tensor is not None else ""})
    return entries


def _as_tuple(out) -> tuple:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def export(exportable: Exportable, fmt: str, output: Path, *, batch: int | None, half: bool, opset: int | None,
           method: str, run_check: bool = True, say: Callable[[str], None] = lambda text: None,
           int8: tuple | None = None, int8_tolerance: float | None = None, bf16: bool = False) -> dict:
    """Export, check, and place the file at ``output``; returns the report. ``say`` hears of
    each stage as it starts (a detector's export takes minutes). ``int8``: (calibration rows,
    held-out rows) to quantize with and check on (ptcli.exporting.quantize). ``bf16``: the
    weights in bfloat16 (exported-program, torchscript), or an OpenVINO IR that its runtime
    computes in bf16; checked with the 16-bit tolerance."""
    import torch

    from ptcli.models import exported
    from ptcli.models.checkpoints import versions
    from ptcli.models.trust import runtime_key
    from ptcli.plugins import get_plugins

    from . import check, writers

    reason = exportable.unsupported.get(fmt)
    if reason:
        raise UsageError(reason)
    module = exportable.module.eval()
    for other in (exportable.reference, exportable.scriptable):
        if other is not None:
            other.eval()
    if exportable.batched:
        example = tuple(exportable.sample(writers.example_batch(batch)))
    else:  # one input per call: the first sample
        example = _as_tuple(exportable.sample(1)[0])
    if bf16 and fmt not in BF16_FORMATS:
        raise UsageError(f"--dtype bf16 exports to {', '.join(BF16_FORMATS)}; onnxruntime's CPU provider has almost no "
                         f"bf16 kernels, so a {fmt} file would not run in bf16")
    if half or (bf16 and fmt != "openvino"):  # OpenVINO keeps fp32 weights and computes in bf16 at run time
        import copy

        dtype = torch.float16 if half else torch.bfloat16
        module = copy.deepcopy(module).to(dtype)
        example = tuple(t.to(dtype) if t.is_floating_point() else t for t in example)
    with torch.no_grad():
        outputs = _as_tuple(module(*example))
    dims = writers.dynamic_dims(exportable, batch)
    meta = {
        **exportable.meta,
        "format": embedded.FORMAT,
        "format_version": embedded.FORMAT_VERSION,
        "export_format": fmt,
        "batch": ("dynamic" if batch is None else batch) if exportable.batched else None,
        "half": half,
        "dtype": "fp16" if half else "bf16" if bf16 else "fp32",
        "inputs": _tensor_entries(exportable.input_names, example, dims),
        "outputs": _tensor_entries(exportable.output_names, outputs, dims),
        "runtime": runtime_key(get_plugins().recipe(exportable.meta.get("recipe", "")), exportable.runtime)
        if exportable.runtime is not None else None,
        "imports": list(exportable.imports),
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if fmt in ("onnx", "openvino"):
        meta["opset"] = opset or writers.DEFAULT_OPSET
    if int8 is not None:
        from . import quantize

        tolerance = quantize.tolerance_for(exportable, int8_tolerance)
        meta["int8"] = {"mode": exportable.quantize, "calibration_inputs": int(int8[0][0].shape[0])}
    target = dataclasses.replace(exportable, module=module) if module is not exportable.module else exportable
    output.parent.mkdir(parents=True, exist_ok=True)
    # Written under its own name in a hidden folder beside it, then moved into place: a .pt2
    # archive records the name it was written under (its folder inside the zip).
    import shutil
    import tempfile

    staging_dir = Path(tempfile.mkdtemp(prefix=f".{output.stem}.partial-", dir=output.parent))
    staging = staging_dir / output.name
    try:
        say(f"exporting to {fmt} (input {list(example[0].shape)})")
        started = time.perf_counter()

        def quantized(fmt_now, path):
            say(f"quantizing to INT8 ({exportable.quantize}, {meta['int8']['calibration_inputs']} calibration inputs)")
            return quantize.quantize(exportable, fmt_now, path, int8[0], meta)

        # OpenVINO's static INT8 is ptcli's ONNX INT8, converted: one quantizer for both formats
        # (NNCF's agreed with fp32 on 0.906 of Lite0's held-out inputs, this one on 0.973).
        via_onnx = int8 is not None and fmt == "openvino" and exportable.quantize == "static"
        exporter = writers.write(target, fmt, staging, example, meta, batch=batch, opset=opset, method=method,
                                 on_onnx=(lambda onnx_path: quantized("onnx", onnx_path)) if via_onnx else None)
        say(f"exported in {time.perf_counter() - started:.1f} s")
        if int8 is not None and not via_onnx:
            exporter += ", then " + quantized(fmt, staging)
        report = {
            "output": str(output), "format": fmt, "exporter": exporter, "recipe": meta.get("recipe"),
            "model": meta.get("model"), "batch": meta["batch"], "half": half, "dtype": meta["dtype"],
            "int8": int8 is not None, "opset": meta.get("opset"),
            "size_bytes": sum(f.stat().st_size for f in (staging, *embedded.companions(staging))),
            "checked": run_check, "check": None,
        }
        if run_check:
            say("checking the export against the eager model")
            loaded = exported.ExportedModel(staging, ops=exportable.imports)
            if int8 is not None:  # by task agreement on inputs the calibration did not see
                passed, figures, why = quantize.check(exportable, loaded, int8[1], tolerance)
                report["check"] = {"passed": passed, **figures}
                if not passed:
                    raise ExportCheckFailed(f"the INT8 {fmt} export is refused: {why}; nothing was written (--int8-tolerance "
                                            "lowers the bar, --no-check skips the check)", report)
            else:
                passed, figures, why = check.check(exportable, loaded, batch=batch, half=half or bf16)
                report["check"] = {"passed": passed, **figures}
            if not passed:
                raise ExportCheckFailed(f"the {fmt} export does not match the eager model {why}; nothing was written "
                                        "(--no-check writes it unchecked)", report)
        for part in embedded.companions(staging):  # the weights first: the .xml names a complete model
            os.replace(part, output.with_name(part.name))
        os.replace(staging, output)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
    return report


class ExportCheckFailed(PtcliError):
    """The export runs but gives other results than the eager model."""

    def __init__(self, message: str, report: dict) -> None:
        super().__init__(message)
        self.report = report
