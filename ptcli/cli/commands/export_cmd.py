"""`ptcli export` and `ptcli export-torchscript`: a recipe's model as a file that runs outside
eager PyTorch, checked against it before it is kept (see ptcli.exporting)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptcli.errors import UsageError
from ptcli.cli.options import JsonOption

FORMATS = ("onnx", "exported-program", "torchscript", "openvino")

CheckpointArg = Annotated[Path | None, typer.Argument(metavar="CKPT", show_default=False,
                          help="A ptcli checkpoint (NAME.safetensors with NAME.json); or give --recipe and --model.")]
RecipeOption = Annotated[str | None, typer.Option("--recipe", "-r", metavar="R", show_default=False,
                         help="The recipe whose --model to export (classify-image, classify-text, ...), without CKPT.")]
ModelOption = Annotated[str | None, typer.Option("--model", "-m", metavar="NAME", show_default=False,
                        help="A model name of --recipe, with its published weights or --weights.")]
WeightsOption = Annotated[Path | None, typer.Option(metavar="FILE", help="Local weights for --model.")]
OutputOption = Annotated[Path, typer.Option("--output", "-o", metavar="FILE", help="The file to write (.onnx, .pt2, .pt, or .xml for OpenVINO, with its .bin beside it).")]
SampleOption = Annotated[list[Path] | None, typer.Option("--sample", metavar="FILE", show_default=False,
                         help="An input to check the export on (repeatable) [default: the recipe's own example].")]
NoCheckOption = Annotated[bool, typer.Option("--no-check", help="Skip loading the file back and comparing it with the eager model.")]


def _batch(value: str) -> int | None:
    if value == "dynamic":
        return None
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise UsageError(f"--batch takes 'dynamic' or a positive number, not {value!r}")


def _format_for(fmt: str | None, output: Path) -> str:
    from ptcli.models.embedded import SUFFIXES

    by_suffix = {suffix: name for name, suffix in SUFFIXES.items()}
    if fmt is None:
        if output.suffix not in by_suffix:
            raise UsageError(f"give --format ({', '.join(FORMATS)}), or an -o file ending in {', '.join(by_suffix)}")
        return by_suffix[output.suffix]
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if output.suffix != SUFFIXES[fmt]:
        raise UsageError(f"-o {output}: a {fmt} export is written to a {SUFFIXES[fmt]} file")
    return fmt


def _recipe(checkpoint: Path | None, recipe_name: str | None, model: str | None, weights: Path | None):
    from ptcli.models.embedded import looks_like_export
    from ptcli.plugins import requested_recipe

    if checkpoint is not None and looks_like_export(checkpoint) and checkpoint.is_file():
        raise UsageError(f"{checkpoint} is already an export; export the checkpoint it came from")
    recipe = requested_recipe(checkpoint, recipe_name, model, weights)
    if recipe.export is None and recipe.predictor is None:
        raise UsageError(f"recipe {recipe.name} does not export its models (it declares neither an export nor a "
                         "predictor); see `ptcli plugins` for the recipes that do")
    return recipe


def run_export(checkpoint, recipe_name, model, weights, output: Path, fmt: str, *, batch: str, half: bool,
               opset: int | None, method: str | None, samples, no_check: bool, json_output: bool,
               int8: bool = False, calibration: Path | None = None, int8_tolerance: float | None = None,
               dtype: str = "fp32") -> None:
    from ptcli.output import emit_json, warn
    from ptcli.refs import load_ref

    recipe = _recipe(checkpoint, recipe_name, model, weights)
    batch_size = _batch(batch)
    if output.exists() and output.is_dir():
        raise UsageError(f"-o {output} is a folder; give a file name")
    for sample in samples or []:
        if not sample.is_file():
            raise UsageError(f"--sample {sample}: no such file")
    from ptcli.exporting.export import ExportCheckFailed, export

    if int8:
        from ptcli.exporting.quantize import FORMATS as INT8_FORMATS

        if fmt not in INT8_FORMATS:
            raise UsageError(f"--int8 quantizes ONNX and OpenVINO exports, not {fmt}")
        if calibration is None:
            raise UsageError("--int8 needs --calibration DIR: a folder of real inputs of the recipe (a few hundred)")
        if not calibration.is_dir():
            state = "is a file" if calibration.exists() else "does not exist"
            raise UsageError(f"--calibration {calibration} {state}; name a folder of real inputs of the recipe")
        if half:
            raise UsageError("--int8 and --half are two precisions; pick one")
    elif calibration is not None or int8_tolerance is not None:
        raise UsageError("--calibration and --int8-tolerance go with --int8")
    if dtype not in ("fp32", "bf16"):
        raise UsageError(f"--dtype must be fp32 or bf16, not {dtype!r} (--half makes fp16 exports)")
    if dtype == "bf16" and (half or int8):
        raise UsageError("--dtype bf16, --half and --int8 are precisions; pick one")
    if recipe.export is not None:
        make = load_ref(recipe.export)
    else:  # the recipe's Predictor exports its own forward
        import functools

        from ptcli.exporting.derived import exportable_from_predictor

        make = functools.partial(exportable_from_predictor, recipe)
    from ptcli.output import Stages, working

    with working(f"loading {checkpoint or model or recipe.name}"):
        exportable = make(checkpoint=checkpoint, model=model, weights=weights, samples=list(samples or []))
    rows = None
    if int8:
        from ptcli.exporting.quantize import calibration_inputs, tolerance_for

        tolerance_for(exportable, int8_tolerance)  # a model without an INT8 check is refused before any work
        with working(f"reading the calibration inputs in {calibration}"):
            rows = calibration_inputs(recipe, exportable, lambda files: make(checkpoint=checkpoint, model=model,
                                                                             weights=weights, samples=files), calibration)
    if not exportable.batched and batch != "dynamic":
        warn(f"{recipe.name} exports take one input per call; --batch {batch} is ignored")
    method = method or exportable.torchscript_methods[0]
    try:
        with Stages("export", quiet=json_output) as say:
            report = export(exportable, fmt, output, batch=batch_size, half=half, opset=opset, method=method,
                            run_check=not no_check, say=say, int8=rows, int8_tolerance=int8_tolerance, bf16=dtype == "bf16")
    except ExportCheckFailed as exc:
        if json_output:
            emit_json({"error": str(exc), "exit_code": 1, **exc.report})
            raise typer.Exit(1) from exc
        print_report(exc.report, failed=True)
        raise
    if no_check:
        warn("the export was not checked (--no-check): nothing ran it against the eager model")
    if json_output:
        emit_json(report)
    else:
        print_report(report)


def print_report(report: dict, failed: bool = False) -> None:
    import sys

    from ptcli.output import emit

    write = (lambda text: sys.stderr.write(text + "\n")) if failed else emit
    size = report["size_bytes"] / 1e6
    batch = report["batch"] if report["batch"] is not None else "one input per call"
    opset = f", opset {report['opset']}" if report.get("opset") else ""
    precision = "int8" if report.get("int8") else report.get("dtype", "fp32")
    write(f"{'checked, not kept' if failed else 'exported'} {report['output']}: {report['format']} via {report['exporter']}"
          f"{opset}, batch {batch}, {precision}, {size:.1f} MB")
    check = report.get("check")
    if not check:
        return
    if "metric" in check:  # an INT8 export's task agreement
        shown = f"{check['value']:.1%}" if check["metric"] == "top1_agreement" else f"{check['value']:.2f} dB"
        bar = f"{check['tolerance']:.1%}" if check["metric"] == "top1_agreement" else f"{check['tolerance']:g} dB"
        write(f"  {check['metric']} on {check['held_out_inputs']} held-out inputs: {shown} (kept at >= {bar}); "
              f"eager {check['eager_ms']:.1f} ms, int8 {check['exported_ms']:.1f} ms")
        if check.get("decided_agreement") is not None and check["decided_inputs"] < check["held_out_inputs"]:
            write(f"  on the {check['decided_inputs']} whose top-1 fp32 decides (it survives half an 8-bit step of noise; "
                  f"the others are near ties): {check['decided_agreement']:.1%}")
        write("check: " + ("passed" if check["passed"] else "FAILED"))
        return
    rows = check["batches"]
    agreement = "top1_agreement" in (rows[0] if rows else {})
    header = f"  {'batch':>5}  {'input':<18} {'max abs error':>13}  {'top-1 agrees' if agreement else 'mean abs error':>14}  {'eager ms':>9}  {'export ms':>9}"
    write(header)
    for row in rows:
        third = f"{row['top1_agreement'] * 100:.0f}%" if agreement else f"{row.get('mean_abs_error', 0):.3g}"
        write(f"  {row['batch']:>5}  {'x'.join(map(str, row['input_shape'])):<18} {row.get('max_abs_error', float('nan')):>13.3g}  "
              f"{third:>14}  {row['eager_ms']:>9.1f}  {row['exported_ms']:>9.1f}")
    write("check: " + ("passed" if check["passed"] else "FAILED"))


def export(
    checkpoint: CheckpointArg = None,
    output: OutputOption = ...,
    fmt: Annotated[str | None, typer.Option("--format", "-f", metavar="FORMAT", show_default=False,
                   help="onnx, exported-program (.pt2), torchscript (.pt) or openvino (.xml + .bin) [default: from -o's ending].")] = None,
    recipe: RecipeOption = None,
    model: ModelOption = None,
    weights: WeightsOption = None,
    batch: Annotated[str, typer.Option(metavar="dynamic|N", help="A dynamic batch dimension, or a fixed batch of N.")] = "dynamic",
    half: Annotated[bool, typer.Option("--half", help="fp16 weights and inputs (for GPUs; checked with a looser tolerance).")] = False,
    opset: Annotated[int | None, typer.Option(min=7, metavar="N", help="ONNX opset [default: 18].", show_default=False)] = None,
    method: Annotated[str | None, typer.Option(metavar="trace|script", show_default=False, help="TorchScript only: how to "
                      "capture the model [default: trace, or script for recipes that cannot be traced (detect)].")] = None,
    samples: SampleOption = None,
    int8: Annotated[bool, typer.Option("--int8", help="Quantize to INT8 (onnx: ONNX Runtime QDQ, static; openvino: that graph, converted), "
                    "calibrated on --calibration; text models get dynamic quantization.")] = False,
    calibration: Annotated[Path | None, typer.Option(metavar="DIR", show_default=False, help="With --int8: real inputs of "
                           "the recipe (a few hundred; up to 300 are read). 80% calibrate, the rest check.")] = None,
    int8_tolerance: Annotated[float | None, typer.Option(min=0.0, metavar="F", show_default=False, help="With --int8: the "
                              "least agreement kept: top-1 agreement with the eager model for classifiers [default: 0.95] "
                              "(on every held-out input; the report also gives it on those whose top-1 fp32 decides, "
                              "without near ties), PSNR in dB against its output for image models [default: 35].")] = None,
    dtype: Annotated[str, typer.Option("--dtype", metavar="fp32|bf16", help="bf16: bfloat16 weights (exported-program, "
                     "torchscript), or an OpenVINO IR computed in bf16 (on CPUs with AVX-512 BF16 or AMX); checked with "
                     "the 16-bit tolerance.")] = "fp32",
    no_check: NoCheckOption = False,
    json_output: JsonOption = False,
) -> None:
    """Export a checkpoint (or --recipe R --model NAME) to ONNX, a torch.export ExportedProgram
    (.pt2), TorchScript (.pt) or OpenVINO IR (.xml + .bin). The file carries the checkpoint's
    sidecar (recipe, labels, preprocessing), so `ptcli <recipe> --checkpoint FILE` runs it. Before
    it is kept, the file is loaded back (onnxruntime, torch.export.load, torch.jit.load,
    OpenVINO's runtime) and run on real inputs of the
    recipe beside the eager model, at batch 1 and 4 when the batch is dynamic: the report gives
    the max abs error, top-1 agreement and both latencies; a mismatch exits 1 and writes nothing."""
    chosen = _format_for(fmt, output)
    if method not in (None, "trace", "script"):
        raise UsageError(f"--method must be trace or script, not {method!r}")
    run_export(checkpoint, recipe, model, weights, output, chosen, batch=batch, half=half, opset=opset, method=method,
               samples=samples, no_check=no_check, json_output=json_output, int8=int8, calibration=calibration,
               int8_tolerance=int8_tolerance, dtype=dtype)


def export_torchscript(
    checkpoint: CheckpointArg = None,
    output: OutputOption = ...,
    recipe: RecipeOption = None,
    model: ModelOption = None,
    weights: WeightsOption = None,
    method: Annotated[str | None, typer.Option(metavar="trace|script", show_default=False, help="trace: run the model once "
                      "and record it (warns where the code branches on data); script: compile its Python (control flow "
                      "kept) [default: trace, or script for recipes that cannot be traced (detect)].")] = None,
    samples: SampleOption = None,
    no_check: NoCheckOption = False,
    json_output: JsonOption = False,
) -> None:
    """Export to TorchScript, as the book does it (ch. 8): eval mode, then torch.jit.trace or
    torch.jit.script, saved with torch.jit.save. TorchScript is deprecated as of torch 2.11
    (torch.jit warns; errors are planned): prefer `ptcli export --format exported-program` or
    `--format onnx`. The same check as `ptcli export` runs on the file before it is kept."""
    if output.suffix != ".pt":
        raise UsageError(f"-o {output}: a TorchScript export is written to a .pt file")
    if method not in (None, "trace", "script"):
        raise UsageError(f"--method must be trace or script, not {method!r}")
    run_export(checkpoint, recipe, model, weights, output, "torchscript", batch="dynamic", half=False, opset=None,
               method=method, samples=samples, no_check=no_check, json_output=json_output)
