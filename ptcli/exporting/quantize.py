"""INT8 exports: the fp32 ONNX or OpenVINO file quantized with real inputs of the recipe, then
checked by what the task cares about on inputs the calibration did not see.

- ONNX: ONNX Runtime's static quantization (QDQ, int8 weights per channel and uint8
  activations, their ranges from the calibration inputs and narrowed where that moves them
  less: int8_ranges), after each layer's weights are clipped and rounded by their inputs and
  its bias corrected for their rounding (int8_weights); models whose exportable says
  ``quantize="dynamic"`` (recurrent and transformer text models, where activation ranges move
  with each text) get dynamic quantization (int8 weights, activations quantized as they come).
- OpenVINO: the same ONNX Runtime INT8 graph, converted by OpenVINO (static; export.py
  quantizes the intermediate ONNX file), or NNCF's int8 weight compression (dynamic).

The calibration folder's inputs (at most ``MOST`` of them, in order) are split: the first 80%
calibrate, the rest check. The check is task agreement, not closeness of numbers: top-1
agreement with the eager model for classifiers (kept at >= 0.95 unless --int8-tolerance says
otherwise), PSNR of the output image against the eager one for image models (>= 35 dB)."""

from __future__ import annotations

from pathlib import Path

from ptcli.errors import UsageError

from .spec import IMAGE, LOGITS, Exportable

MOST = 300
HELD_OUT = 0.2
#: What a quantized model must keep, by output kind: top-1 agreement, or PSNR in dB. 0.95: the
#: default model's INT8 agrees on 22 of 22 held-out shared photos (21 with the last release's
#: ranges: the one that flipped is a near tie, fp32's top two 0.337 and 0.314) and on 0.92-0.96
#: of generated held-out sets, where bf16 agrees on 0.95-0.98; ONNX Runtime's default INT8
#: agrees on 20 of the 22 and 0.86-0.94 (docs/exports.md). At 0.99 a single near tie in 22
#: refused an export.
DEFAULT_TOLERANCE = {LOGITS: 0.95, IMAGE: 35.0}
FORMATS = ("onnx", "openvino")


def calibration_inputs(recipe, exportable: Exportable, exportable_for, folder: Path) -> tuple[tuple, tuple]:
    """(calibration rows, held-out rows): the model's inputs for the files under ``folder``,
    made by the recipe's exporter from them as samples (its own decode and preprocess)."""
    from ptcli.inference.inputs import expand_inputs
    from ptcli.vision.imaging import IMAGE_EXTENSIONS

    if not exportable.batched:
        raise UsageError(f"{recipe.name} exports take one input per call; INT8 is for batched exports")
    endings = exportable.calibration_endings or (recipe.data_adapter.extensions if recipe.data else IMAGE_EXTENSIONS)
    files = expand_inputs([str(folder)], endings)[:MOST]
    calibrated = exportable_for(files) if files else None
    count = 0 if calibrated is None else min(MOST, calibrated.distinct or len(files))
    if count < 5:
        raise UsageError(f"--calibration {folder}: {count} input{'s' if count != 1 else ''} found in its "
                         f"{'/'.join(endings)} files; give at least 5 (a few hundred real inputs of the recipe calibrate best)")
    rows = tuple(calibrated.sample(count))
    split = max(1, round(count * HELD_OUT))
    return tuple(t[:-split] for t in rows), tuple(t[-split:] for t in rows)


def tolerance_for(exportable: Exportable, given: float | None) -> float:
    kind = exportable.output if isinstance(exportable.output, str) else None
    if kind not in DEFAULT_TOLERANCE:
        raise UsageError(f"{exportable.meta.get('recipe')}: INT8 exports are checked for classifiers and image models; "
                         "this model's output is compared its own way, which has no INT8 check yet")
    if given is None:
        return DEFAULT_TOLERANCE[kind]
    if kind == LOGITS and not 0 < given <= 1:
        raise UsageError(f"--int8-tolerance {given:g}: for a classifier it is the share of inputs whose top-1 must agree, "
                         "in (0, 1] (e.g. 0.97)")
    if kind == IMAGE and not given > 0:
        raise UsageError(f"--int8-tolerance {given:g}: for an image model it is a PSNR in dB, above 0 (e.g. 30)")
    return given


def quantize(exportable: Exportable, fmt: str, path: Path, calibration: tuple, meta: dict) -> str:
    """Quantize the fp32 export at ``path`` in place; returns how. The quantizers' progress
    bars and advice go nowhere (stdout belongs to results; PTCLI_DEBUG=1 shows them)."""
    import logging

    from .writers import quiet_exporter

    mode = exportable.quantize
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime's quantizer logs its advice on the root logger
    try:
        with quiet_exporter():
            if fmt == "onnx":
                return _onnx(exportable, path, calibration, meta, mode)
            return _openvino(exportable, path, calibration, meta, mode)
    finally:
        root.setLevel(level)


def _feeds(exportable: Exportable, rows: tuple) -> list[dict]:
    """One input dict (numpy, batch 1) per calibration row."""
    count = rows[0].shape[0]
    return [{name: rows[k][i:i + 1].numpy() for k, name in enumerate(exportable.input_names)} for i in range(count)]


def _onnx(exportable: Exportable, path: Path, calibration: tuple, meta: dict, mode: str) -> str:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ptcli.models import embedded

    quantized = path.with_name(path.stem + ".int8.onnx")
    if mode == "dynamic":
        quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
        how = "onnxruntime dynamic (int8 weights)"
    else:
        kept = first_layer(path)
        by_inputs, narrowed = _static(path, quantized, _feeds(exportable, calibration), kept)
        how = (f"onnxruntime static QDQ (int8, {calibration[0].shape[0]} calibration inputs, activation ranges "
               f"{'narrowed by their rounding error' if narrowed else 'from their widest calibration values'}, weights clipped, "
               f"{'rounded by their inputs (GPTQ)' if by_inputs else 'rounded to their nearest level'} and biases corrected "
               "per channel") + (", first layer kept in fp32)" if kept else ")")
    quantized.replace(path)
    embedded.write_onnx(path, meta)
    return how


def _static(path: Path, quantized: Path, feeds: list[dict], kept: list[str]) -> tuple[bool, bool]:
    """Writes ``quantized``: ONNX Runtime's static INT8 of the fp32 graph at ``path``, its
    weights prepared first (ptcli.exporting.int8_weights), its activations' ranges narrowed by
    their rounding error (int8_ranges). Each of the two steps that may not suit every model is
    kept only if the whole model comes closer to fp32 on the calibration inputs: the weights'
    rounding by their inputs (GPTQ lowers each layer's error given fp32 inputs, not the sum
    over layers: on one small random network of three it ended 2.45x farther), and the narrowed
    ranges (farther on small networks with heavy-tailed inputs). Returns (the weights rounded
    by their inputs, the ranges narrowed).

    On Lite0 both are kept, and it agrees with fp32 on 0.963 of 297 held-out crops and
    0.924-0.946 of three later sets of 276, against 0.943 and 0.855-0.870 for ONNX Runtime's
    defaults; its class probabilities' KL from fp32 is 0.0046 against 0.0298
    (bench/int8_agreement.py)."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from . import int8_ranges, int8_weights

    def static(prepared: Path, out: Path, options: dict) -> None:
        pending = iter(feeds)

        class Reader(CalibrationDataReader):
            def get_next(self):
                return next(pending, None)

        # U8S8: activations after ReLU-like layers use the whole unsigned range (Lite0 on held-out
        # photos: top-1 agreement 0.91 against 0.86 with int8 activations); VNNI runs it without
        # the saturation older x86 units had. A small first layer (``kept``) stays in fp32: it
        # sees the raw pixels, and Lite0's first layer quantized alone flipped the top-1 of one
        # in five calibration inputs. A Gemm's output stays in fp32: rounded to 8 bits, a
        # classifier's logits tie classes that were near each other (on Lite0, one point of
        # agreement).
        quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=kept,
                        extra_options={"OpTypesToExcludeOutputQuantization": ["Gemm"], **options})

    work = {name: path.with_name(f"{path.stem}.{name}.onnx") for name in ("gptq", "nearest", "gptq.int8", "nearest.int8", "narrowed.int8")}
    try:
        for rounding in ("gptq", "nearest"):
            int8_weights.prepare(path, work[rounding], feeds, kept, by_inputs=rounding == "gptq")
            static(work[rounding], work[f"{rounding}.int8"], {})  # MinMax ranges: which activations it quantizes
        by_inputs_far, nearest_far = int8_ranges.distances(path, [work["gptq.int8"], work["nearest.int8"]], feeds)
        by_inputs = by_inputs_far <= nearest_far
        rounding = "gptq" if by_inputs else "nearest"
        widest = work[f"{rounding}.int8"]
        ranges = int8_ranges.chosen(work[rounding], int8_ranges.activation_ranges(widest), feeds)
        static(work[rounding], work["narrowed.int8"], {"TensorQuantOverrides": {
            name: [{"rmin": np.float32(low), "rmax": np.float32(high)}] for name, (low, high) in ranges.items()}})
        narrowed = int8_ranges.distances(path, [work["narrowed.int8"]], feeds)[0] <= min(by_inputs_far, nearest_far)
        (work["narrowed.int8"] if narrowed else widest).replace(quantized)
    finally:
        for file in work.values():
            file.unlink(missing_ok=True)
    return by_inputs, narrowed


#: The ONNX operators that hold a layer's weights.
LAYERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


#: The largest share of the model's weights a first layer kept in fp32 may hold (Lite0's stem
#: holds 0.02%; a first layer that is most of the model, SimpleNet's, is quantized).
SMALL_FIRST_LAYER = 0.02


def first_layer(path: Path) -> list[str]:
    """The name of the graph's first weighted layer (the graph is in order) when it is small
    beside the model (SMALL_FIRST_LAYER), else none."""
    import math

    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    sizes = {tensor.name: math.prod(tensor.dims) for tensor in graph.initializer}
    layers = [node for node in graph.node if node.op_type in LAYERS]
    if not layers:
        return []
    first = sum(sizes.get(name, 0) for name in layers[0].input[1:])
    return [layers[0].name] if first <= SMALL_FIRST_LAYER * sum(sizes.values()) else []


def _openvino(exportable: Exportable, path: Path, calibration: tuple, meta: dict, mode: str) -> str:
    import json
    import logging

    from ptcli.models.embedded import OPENVINO_RT_INFO
    from ptcli.models.exported import drop_dangling_signal_stack, require

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # NNCF's import asks it for CUDA
    openvino, nncf = require("openvino"), require("nncf")
    nncf.set_log_level(logging.ERROR)

    model = openvino.Core().read_model(str(path))
    if mode != "dynamic":  # export.py quantizes static OpenVINO exports as ONNX, before converting them
        raise ValueError("static OpenVINO INT8 goes through the ONNX quantizer")
    model = nncf.compress_weights(model)
    how = f"NNCF {nncf.__version__} int8 weight compression"
    import gc

    gc.collect()  # NNCF made OpenVINO models of its own while it compressed: release them now,
    drop_dangling_signal_stack()  # and put right the signal stack their release leaves
    model.set_rt_info(json.dumps(meta), list(OPENVINO_RT_INFO))
    staged = path.with_name(path.stem + ".int8.xml")
    openvino.save_model(model, str(staged), compress_to_fp16=False)
    staged.replace(path)
    staged.with_suffix(".bin").replace(path.with_suffix(".bin"))
    return how


def check(exportable: Exportable, exported, held_out: tuple, tolerance: float) -> tuple[bool, dict, str]:
    """Task agreement of the quantized export with the eager model on the held-out rows."""
    import torch

    from .check import timed

    with torch.no_grad():
        eager, eager_ms = timed(exportable.reference or exportable.module, held_out, 3)
        quantized, exported_ms = timed(exported, held_out, 3)
    eager = (eager[0] if isinstance(eager, (tuple, list)) else eager).float()
    quantized = (quantized[0] if isinstance(quantized, (tuple, list)) else quantized).float().cpu()
    rows = int(held_out[0].shape[0])
    figures = {"held_out_inputs": rows, "eager_ms": round(eager_ms, 3), "exported_ms": round(exported_ms, 3),
               "tolerance": tolerance}
    if exportable.output == LOGITS:
        same = eager.argmax(-1) == quantized.argmax(-1)
        agreement = float(same.float().mean())
        sure = decided(exportable.reference or exportable.module, held_out, eager.argmax(-1))
        on_sure = float(same[sure].float().mean()) if bool(sure.any()) else None
        figures.update(metric="top1_agreement", value=round(agreement, 6), decided_inputs=int(sure.sum()),
                       decided_agreement=None if on_sure is None else round(on_sure, 6))
        ok = agreement >= tolerance
        why = "" if ok else (f"top-1 agrees with the eager model on {agreement:.1%} of {rows} held-out inputs, under {tolerance:.1%}"
                             f" ({int(same[sure].sum())} of the {int(sure.sum())} whose top-1 fp32 decides; the others are near ties)")
    else:
        mse = float(((eager.clamp(0, 1) - quantized.clamp(0, 1)) ** 2).mean())
        psnr = 99.0 if mse == 0 else float(10 * torch.log10(torch.tensor(1.0 / mse)))
        figures.update(metric="psnr_db", value=round(psnr, 3))
        ok = psnr >= tolerance
        why = "" if ok else f"its images are {psnr:.1f} dB from the eager model's (PSNR on {rows} held-out inputs), under {tolerance:g} dB"
    return ok, figures, why


#: How many times each held-out input is redrawn with its own 8-bit rounding to tell whether
#: fp32 decides its top-1.
DRAWS = 8


def decided(run, held_out: tuple, expected):
    """Per held-out row: whether ``run``'s top-1 stays ``expected`` in DRAWS draws of uniform
    noise of half an 8-bit step of each float input's own range (half a grey level, for a
    photo). Those it does not keep are near ties that no number format can be held to; which
    they are depends on the eager model alone. Integer inputs (tokens) have no rounding: every
    row of a model with no float input is decided."""
    import torch

    expected = expected.cpu()
    sure = torch.ones(expected.shape[0], dtype=torch.bool)
    if not any(t.is_floating_point() for t in held_out):
        return sure
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(DRAWS):
            noisy = []
            for t in held_out:
                if t.is_floating_point():
                    flat = t.reshape(t.shape[0], -1)
                    span = (flat.amax(1) - flat.amin(1)).reshape(-1, *[1] * (t.dim() - 1))
                    t = t + (torch.rand(t.shape, generator=generator, dtype=t.dtype) - 0.5) * span / 255
                noisy.append(t)
            out = run(*noisy)
            out = out[0] if isinstance(out, (tuple, list)) else out
            sure &= out.float().argmax(-1).cpu() == expected
    return sure
