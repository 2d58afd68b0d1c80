"""`ptcli benchmark`: a recipe's model in every format and precision, exported, checked and
timed (see ptcli.exporting.benchmark)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptcli.cli.options import JsonOption
from ptcli.errors import UsageError


def benchmark(
    checkpoint: Annotated[Path | None, typer.Argument(metavar="CKPT", show_default=False,
                          help="A ptcli checkpoint; or give --recipe and --model.")] = None,
    recipe: Annotated[str | None, typer.Option("--recipe", "-r", metavar="R", show_default=False,
                      help="The recipe whose --model to benchmark, without CKPT.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", metavar="NAME", show_default=False,
                     help="A model name of --recipe (its default if not given).")] = None,
    weights: Annotated[Path | None, typer.Option(metavar="FILE", help="Local weights for --model.")] = None,
    data: Annotated[Path | None, typer.Option(metavar="DIR", show_default=False, help="Labelled data in the recipe's "
                    "layout: each row's metric is what `ptcli eval` computes on it, and INT8 rows calibrate on it "
                    "[default: agreement with eager fp32 on the recipe's sample inputs; no INT8 rows].")] = None,
    calibration: Annotated[Path | None, typer.Option(metavar="DIR", show_default=False, help="Real inputs of the recipe "
                           "for the INT8 rows to calibrate on (80%) and be checked on (20%) [default: --data].")] = None,
    formats: Annotated[str, typer.Option(metavar="A,B", help="Rows, comma-separated: eager, eager-bf16, onnx, onnx-int8, "
                       "openvino, openvino-bf16, openvino-int8, exported-program, torchscript [default: all].")] = ",".join(
                           ("eager", "eager-bf16", "onnx", "onnx-int8", "openvino", "openvino-bf16", "openvino-int8",
                            "exported-program", "torchscript")),
    batch: Annotated[int, typer.Option(min=1, metavar="N", help="The batch throughput is measured at.")] = 8,
    repeats: Annotated[int, typer.Option(min=1, metavar="N", help="Timed runs per figure (their median; after 2 warm-up runs).")] = 5,
    json_output: JsonOption = False,
) -> None:
    """One model in every format and precision it runs in, each exported and checked as
    `ptcli export` does, then timed: size, the task metric on --data (or agreement with eager
    fp32), latency at batch 1 and throughput at --batch. A format that cannot be made or fails
    its check is a row that says why. --json: one object per row (format, precision, size_mb,
    metric, value, latency_ms, throughput, check)."""
    import tempfile

    from ptcli.exporting.benchmark import ROWS, fastest, run_rows, table
    from ptcli.output import emit, emit_json
    from ptcli.plugins import requested_recipe
    from ptcli.refs import load_ref

    wanted = tuple(part.strip() for part in formats.split(",") if part.strip())
    unknown = [name for name in wanted if name not in ROWS]
    if unknown or not wanted:
        raise UsageError(f"--formats takes {', '.join(ROWS)} (got {', '.join(unknown) or 'nothing'})")
    for option, path in (("--data", data), ("--calibration", calibration)):
        if path is not None and not path.exists():
            raise UsageError(f"{option} {path}: no such file or folder")
    chosen = requested_recipe(checkpoint, recipe, model, weights)
    refuse_empty(data, "--data", chosen)
    refuse_empty(calibration, "--calibration", chosen)
    if chosen.export is None:
        raise UsageError(f"recipe {chosen.name} does not export its models; it has nothing to benchmark beyond eager")
    make = load_ref(chosen.export)

    def exportable(samples):
        return make(checkpoint=checkpoint, model=model, weights=weights, samples=list(samples))

    from ptcli.output import Stages

    with Stages("benchmark", quiet=json_output) as say, tempfile.TemporaryDirectory(prefix="ptcli-benchmark-") as folder:
        rows = run_rows(chosen, exportable, checkpoint=checkpoint, model=model, weights=weights, data=data,
                        calibration=calibration or data, formats=wanted,
                        batch=batch, repeats=repeats, folder=Path(folder), say=say)
    if json_output:
        for row in rows:
            emit_json(row.report())
        return
    emit(table(rows))
    best, eager = fastest(rows), next((row for row in rows if row.format == "eager" and row.precision == "fp32" and row.throughput), None)
    if best is not None and eager is not None:
        emit(f"fastest checked: {best.format} {best.precision}, {best.throughput / eager.throughput:.2f}x eager fp32's throughput")


def refuse_empty(folder: Path | None, option: str, recipe) -> None:
    """A folder without one input of the recipe: a usage error now, not an error in every row."""
    from ptcli.vision.imaging import IMAGE_EXTENSIONS

    if folder is None or not folder.is_dir():
        return
    endings = recipe.data_adapter.extensions if recipe.data else IMAGE_EXTENSIONS
    if not any(path.suffix.lower() in endings for path in folder.rglob("*") if path.is_file()):
        raise UsageError(f"{option} {folder} holds no {'/'.join(endings)} files: give real inputs of recipe {recipe.name}")
