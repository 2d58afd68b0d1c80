"""The self-check: the written file is loaded back and run on the recipe's real inputs beside
the eager model, at batch 1 and at another batch size when the batch is dynamic. It reports
the largest difference, how often the top prediction agrees, and both latencies."""

from __future__ import annotations

import time
from statistics import median

from .spec import IMAGE, LOGITS, Exportable

#: Allowed max abs error, relative to the eager output's largest magnitude (at least 1).
TOLERANCE = {False: 1e-3, True: 5e-2}


def _as_tuple(out) -> tuple:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def compare_logits(eager, exported, half: bool) -> tuple[bool, dict, str]:
    e, x = _as_tuple(eager)[0].float().cpu(), _as_tuple(exported)[0].float().cpu()
    if e.shape != x.shape:
        return False, {"shape": list(x.shape)}, f"output shape {list(x.shape)}, eager {list(e.shape)}"
    error = float((e - x).abs().max())
    same = int((e.argmax(-1) == x.argmax(-1)).sum())
    rows = e.reshape(-1, e.shape[-1]).shape[0]
    allowed = TOLERANCE[half] * max(1.0, float(e.abs().max()))
    report = {"max_abs_error": error, "top1_agreement": same / rows}
    if same != rows:
        return False, report, f"top-1 agrees on {same} of {rows} inputs (max abs error {error:.3g})"
    if error > allowed:
        return False, report, f"max abs error {error:.3g} is above {allowed:.3g}"
    return True, report, ""


def compare_images(eager, exported, half: bool) -> tuple[bool, dict, str]:
    e, x = _as_tuple(eager)[0].float().cpu(), _as_tuple(exported)[0].float().cpu()
    if e.shape != x.shape:
        return False, {"shape": list(x.shape)}, f"output shape {list(x.shape)}, eager {list(e.shape)}"
    error = float((e - x).abs().max())
    allowed = TOLERANCE[half] * max(1.0, float(e.abs().max()))
    report = {"max_abs_error": error, "mean_abs_error": float((e - x).abs().mean())}
    if error > allowed:
        return False, report, f"max abs error {error:.3g} is above {allowed:.3g}"
    return True, report, ""


COMPARE = {LOGITS: compare_logits, IMAGE: compare_images}


def timed(run, inputs, repeats: int) -> tuple[object, float]:
    """The output and the median latency in ms, after two warm-up runs (the first calls of a
    model on a new shape pay for its kernels' setup: timed, eager looked 2-30x slower)."""
    import torch

    with torch.no_grad():
        out = run(*inputs)
        run(*inputs)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run(*inputs)
            times.append(time.perf_counter() - start)
    return out, median(times) * 1000


def check(exportable: Exportable, exported, *, batch: int | None, half: bool, repeats: int = 3) -> tuple[bool, dict, str]:
    """(passed, report, why it failed) for the loaded export ``exported`` against the eager module."""
    compare = exportable.output if callable(exportable.output) else COMPARE[exportable.output]
    # A fixed batch is checked at 1 too: the runtime pads a short batch up to the export's size.
    sizes = ([1, 4] if batch is None else sorted({1, batch})) if exportable.batched else [2]
    rows = []
    for size in sizes:
        inputs = exportable.sample(size)
        cases = [tuple(inputs)] if exportable.batched else [_as_tuple(i) for i in inputs]
        for case in cases:
            eager_out, eager_ms = timed(exportable.reference or exportable.module, case, repeats)
            try:
                out, exported_ms = timed(exported, case, repeats)
            except Exception as exc:  # the runtime refuses an input the export should take
                from ptcli.errors import flatten

                return False, {"batches": rows}, f"at batch {size} the export failed to run: {flatten(exc, 300)}"
            passed, figures, why = compare(eager_out, out, half)
            row = {"batch": size if exportable.batched else 1, "input_shape": list(case[0].shape), **figures,
                   "eager_ms": round(eager_ms, 3), "exported_ms": round(exported_ms, 3)}
            rows.append(row)
            if not passed:
                return False, {"batches": rows}, f"at batch {row['batch']} (input {list(case[0].shape)}): {why}"
    return True, {"batches": rows}, ""
