"""`ptcli benchmark`: one model in every format and precision it runs in, each exported and
checked as `ptcli export` does, then timed the same way and, with labelled data, scored by the
recipe's own `ptcli eval`. A format that cannot be made or fails its check is a row that says
why; nothing is kept (the exports live in a temporary folder).

Rows: eager fp32, eager bf16 (where the CPU has bf16 units), onnx, onnx-int8, openvino,
openvino-bf16 (where the CPU has bf16 units), openvino-int8, exported-program, torchscript. INT8 rows calibrate on --data (80% of
its inputs; the rest check them), or on --calibration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROWS = ("eager", "eager-bf16", "onnx", "onnx-int8", "openvino", "openvino-bf16", "openvino-int8", "exported-program",
        "torchscript")
#: The figure `ptcli eval` reports first for each kind of recipe, in this order of preference.
EVAL_METRICS = ("accuracy", "map", "psnr", "perplexity")


@dataclass
class Row:
    format: str
    precision: str
    size_mb: float | None = None
    metric: str | None = None
    value: float | None = None
    latency_ms: float | None = None
    throughput: float | None = None
    check: str = "ok"

    def report(self) -> dict:
        return {"format": self.format, "precision": self.precision, "size_mb": self.size_mb, "metric": self.metric,
                "value": self.value, "latency_ms": self.latency_ms, "throughput": self.throughput, "check": self.check}


def bf16_supported() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX): elsewhere torch emulates it, slower than fp32."""
    import torch

    from ptcli.devices import bf16_native

    return bf16_native(torch.device("cpu"))


def speed(exportable, run: Callable, batch: int, repeats: int) -> tuple[float, float]:
    """(latency in ms at batch 1, inputs/s at ``batch``); a one-input-per-call model is timed
    on single inputs for both."""
    from .check import timed

    if not exportable.batched:
        inputs = exportable.sample(1)[0]
        _, ms = timed(run, inputs if isinstance(inputs, tuple) else (inputs,), repeats)
        return round(ms, 3), round(1000 / ms, 3)
    _, one = timed(run, tuple(exportable.sample(1)), repeats)
    _, many = timed(run, tuple(exportable.sample(batch)), repeats)
    return round(one, 3), round(batch * 1000 / many, 3)


def agreement(exportable, run: Callable, reference: Callable, rows: int = 16) -> tuple[str, float]:
    """How the row agrees with eager fp32 on the recipe's sample inputs: top-1 agreement for
    classifiers, PSNR (dB) for image models, the export check's own figure otherwise."""
    import torch

    from .spec import IMAGE, LOGITS

    if not exportable.batched or not isinstance(exportable.output, str):
        return "check", 1.0
    inputs = tuple(exportable.sample(rows))
    with torch.no_grad():
        a, b = reference(*inputs), run(*inputs)
    a = (a[0] if isinstance(a, (tuple, list)) else a).float().cpu()
    b = (b[0] if isinstance(b, (tuple, list)) else b).float().cpu()
    if exportable.output == LOGITS:
        return "top1_agreement", round(float((a.argmax(-1) == b.argmax(-1)).float().mean()), 6)
    if exportable.output == IMAGE:
        mse = float(((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean())
        return "psnr_vs_eager_db", 99.0 if mse == 0 else round(float(10 * torch.log10(torch.tensor(1 / mse))), 3)
    return "check", 1.0


def evaluated(recipe, source, data: Path, batch: int) -> tuple[str, float]:
    """The recipe's `ptcli eval` figure for the model at ``source`` (a checkpoint or export
    file, or a Source naming a model) on ``data``."""
    import torch

    from ptcli.inference.runner import load_predictor
    from ptcli.training.scoring import score

    if isinstance(source, Path):
        report, _ = score(recipe, source, data, device=torch.device("cpu"), batch_size=batch)
    else:
        report = load_predictor(recipe, source, torch.device("cpu")).evaluate(Path(data), batch_size=batch)
    for key in EVAL_METRICS:
        if key in report:
            return key, float(report[key])
    raise ValueError(f"{recipe.name}'s eval report has none of {', '.join(EVAL_METRICS)}")


def run_rows(recipe, make: Callable, *, checkpoint, model, weights, data: Path | None, calibration: Path | None, formats: tuple[str, ...],
             batch: int, repeats: int, folder: Path, say: Callable[[str], None]) -> list[Row]:
    """Every requested row, in ``ROWS`` order; ``make(samples)`` is the recipe's exportable."""
    from ptcli.errors import PtcliError, flatten
    from ptcli.inference.contract import Source
    from ptcli.inference.runner import evaluates
    from ptcli.models import exported
    from ptcli.training.scoring import scores

    from .export import export
    from .quantize import calibration_inputs

    say("loading the model")
    exportable = make([])
    reference = exportable.reference or exportable.module
    reference.eval()
    # A named model is scored through its predictor; a checkpoint and the exports as `ptcli eval` scores them.
    scored = data is not None and (scores(recipe) if checkpoint is not None else evaluates(recipe))
    rows: list[Row] = []
    calibrated = None
    if calibration is not None and exportable.batched and any(name.endswith("-int8") for name in formats):
        say("reading the calibration inputs")
        calibrated = calibration_inputs(recipe, exportable, make, calibration)  # a usage error before any row
    wanted = [row for row in ROWS if row in formats]
    for number, name in enumerate(wanted, start=1):
        fmt, precision = (name[:-5], name[-4:]) if name.endswith(("-int8", "-bf16")) else (name, "fp32")
        row = Row(format="eager" if fmt == "eager" else fmt, precision=precision)
        rows.append(row)
        prefix = f"row {number}/{len(wanted)}, {name}"
        say(f"{prefix}: {'scoring and timing' if fmt == 'eager' else 'exporting and checking'}")
        try:
            if fmt == "eager":
                run = _as_the_command_runs(exportable, reference)
                run = run if precision == "fp32" else _bf16(run)
                if precision == "bf16" and not bf16_supported():
                    row.check = "this CPU has no bf16 units (AVX-512 BF16 or AMX): torch would emulate bf16, slower than fp32"
                    continue
                row.size_mb = round(sum(p.numel() * p.element_size() for p in reference.parameters()) / 1e6, 3)
                if scored and precision == "fp32":
                    row.metric, row.value = evaluated(recipe, Path(checkpoint) if checkpoint is not None else
                                                      Source(model=model, weights=weights), data, batch)
                else:
                    row.metric, row.value = agreement(exportable, run, reference)
            else:
                int8 = None
                if precision == "bf16" and not bf16_supported():
                    row.check = "this CPU has no bf16 units (AVX-512 BF16 or AMX)"
                    continue
                if precision == "int8":
                    if calibration is None:
                        row.check = "needs --calibration DIR (or --data DIR): real inputs to calibrate on"
                        continue
                    if calibrated is None:  # an unbatched export: the row says why it has no INT8
                        calibrated = calibration_inputs(recipe, exportable, make, calibration)
                    int8 = calibrated
                path = folder / f"{name}{_ending(fmt)}"
                report = export(exportable, fmt, path, batch=None, half=False, opset=None,
                                method=exportable.torchscript_methods[0], int8=int8, bf16=precision == "bf16",
                                say=lambda text, prefix=prefix: say(f"{prefix}: {text}"))
                row.size_mb = round(report["size_bytes"] / 1e6, 3)
                run = exported.ExportedModel(path, ops=exportable.imports).to("cpu")
                say(f"{prefix}: {'scoring' if scored else 'comparing with eager'}")
                if scored:
                    row.metric, row.value = evaluated(recipe, path, data, batch)
                else:
                    row.metric, row.value = agreement(exportable, run, reference)
            say(f"{prefix}: timing {repeats} runs of batch {batch}")
            row.latency_ms, row.throughput = speed(exportable, run, batch, repeats)
        except PtcliError as error:
            row.check = str(error)
        except Exception as error:  # a runtime's own failure: the row says it, the others go on
            row.check = flatten(error, 300)
        finally:
            run = None
            _release()
    return rows


def _release() -> None:
    """The row's runtimes, released before the next row (see ptcli.models.exported._CompiledModel)."""
    import gc

    from ptcli.models.exported import drop_dangling_signal_stack

    gc.collect()
    drop_dangling_signal_stack()


def _as_the_command_runs(exportable, reference):
    """The eager model as the recipes' commands run it: its BatchNorms folded where it can
    (ptcli.models.fusion), image batches (4-D) in channels_last, where CPU convolutions are
    faster (an export's own runtime picks its layouts)."""
    import copy

    import torch

    from ptcli.models.fusion import folded

    inputs = tuple(exportable.sample(1)) if exportable.batched else ()
    if not inputs or not all(t.dim() == 4 and t.is_floating_point() for t in inputs):
        return reference
    module = folded(copy.deepcopy(reference)).to(memory_format=torch.channels_last)

    def run(*tensors):
        return module(*(t.contiguous(memory_format=torch.channels_last) for t in tensors))

    return run


def _bf16(module):
    import torch

    def run(*inputs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = module(*inputs)
        return tuple(o.float() for o in out) if isinstance(out, (tuple, list)) else out.float()

    return run


def _ending(fmt: str) -> str:
    from ptcli.models.embedded import SUFFIXES

    return SUFFIXES[fmt]


def fastest(rows: list[Row]) -> Row | None:
    """The checked row with the highest throughput."""
    good = [row for row in rows if row.check == "ok" and row.throughput]
    return max(good, key=lambda row: row.throughput) if good else None


def table(rows: list[Row]) -> str:
    lines = [f"{'format':<17} {'precision':<9} {'size MB':>8} {'metric':<16} {'value':>8} {'latency ms':>11} {'inputs/s':>9}  check"]
    for row in rows:
        value = "" if row.value is None else f"{row.value:.4g}"
        lines.append(f"{row.format:<17} {row.precision:<9} {_num(row.size_mb):>8} {row.metric or '':<16} {value:>8} "
                     f"{_num(row.latency_ms):>11} {_num(row.throughput):>9}  {row.check}")
    return "\n".join(lines)


def _num(value) -> str:
    return "" if value is None else f"{value:.1f}" if value >= 10 else f"{value:.3g}"
