"""`ptcli defend`: a table over input filters, not a prediction per input, so its own command
(`attack` is derived from its Predictor). Heavy imports happen inside functions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptcli.cli.derived import option_parameter
from ptcli.cli.options import DeviceOption, JsonOption, batch_size_option, model_option
from ptcli.errors import UsageError

from . import RECIPE
from .predictor import OPTIONS

#: attack's flags as it declares them.
_FLAG = {option.name: option_parameter(option).annotation for option in OPTIONS}


def defend(
    checkpoint: Annotated[Path | None, typer.Argument(metavar="CKPT", help="A classify-image checkpoint (default: the offline EfficientNet-Lite0).", show_default=False)] = None,
    data: Annotated[Path | None, typer.Option(metavar="DIR", help="A labelled ImageFolder (DIR/<class>/*, or its val/).")] = None,
    model: model_option("An image classifier by name, instead of CKPT.") = None,
    filters: Annotated[str, typer.Option("--filters", metavar="F,G", help="The input filters compared.")] = "jpeg:75,median:3,bits:4",
    method: _FLAG["method"] = "pgd",
    norm: _FLAG["norm"] = "linf",
    eps: _FLAG["eps"] = "4/255",
    steps: _FLAG["steps"] = None,
    batch_size: batch_size_option("Images per attack batch.") = 32,
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
) -> None:
    """One table: clean and robust accuracy of a classifier with no defence and with each input
    filter, under the plain attack (which does not see the filter) and the adaptive one (BPDA:
    through the filter as if it were the identity). Where the two differ, the filter masks
    gradients rather than making the model robust."""
    from ptcli.output import emit, emit_json, progress
    from ptcli.plugins.capabilities import image_classifier
    from ptcli.vision.defenses import parse_filter

    from .robustness import load_batches, robust_accuracy
    from .settings import attack_settings

    if data is None:
        raise UsageError("give --data DIR, a labelled ImageFolder")
    if not data.is_dir():
        raise UsageError(f"data folder not found: {data}")
    settings = attack_settings(method, norm, eps, steps)
    chosen = [parse_filter(f.strip()) for f in filters.split(",") if f.strip()]
    classifier, target_device = image_classifier(model=model, weights=None, checkpoint=checkpoint, device=device,
                                                 devices=RECIPE.devices.devices)
    batches = load_batches(classifier, data, batch_size)
    total = sum(len(labels) for _, labels, _, _ in batches)
    rows = []
    with progress() as bar:
        for in_filter in [None, *chosen]:
            task = bar.add_task(in_filter.name if in_filter else "no defence", total=total * (2 if in_filter else 1))
            advance = lambda n: bar.advance(task, n)  # noqa: E731
            adaptive = robust_accuracy(classifier, batches, settings, device=target_device, defense=in_filter, on_batch=advance)
            plain = robust_accuracy(classifier, batches, settings, device=target_device, defense=in_filter, adaptive=False,
                                    on_batch=advance) if in_filter else adaptive
            bar.remove_task(task)
            # The same words as `attack --data --defense`: robust_accuracy is the adaptive (BPDA) figure.
            rows.append({"defense": in_filter.name if in_filter else "none", "clean_accuracy": adaptive.as_dict()["clean_accuracy"],
                         "robust_accuracy": adaptive.as_dict()["robust_accuracy"],
                         "robust_accuracy_non_adaptive": plain.as_dict()["robust_accuracy"], "samples": adaptive.samples})
    report = {"model": classifier.source, "data": str(data), "method": settings.method, "norm": settings.norm,
              "eps": round(settings.eps, 6), "steps": settings.steps, "rows": rows}
    if json_output:
        emit_json(report)
        return
    lines = [f"{rows[0]['samples']} images of {data}, {settings.method.upper()} {settings.norm} eps {settings.eps:.4g}, {settings.steps} steps",
             f"{'defence':<10} {'clean':>7} {'robust (adaptive)':>17} {'non-adaptive':>12}"]
    for row in rows:
        masked = "  (masks gradients)" if row["robust_accuracy_non_adaptive"] - row["robust_accuracy"] > 0.1 else ""
        lines.append(f"{row['defense']:<10} {row['clean_accuracy']:>7.4f} {row['robust_accuracy']:>17.4f} "
                     f"{row['robust_accuracy_non_adaptive']:>12.4f}{masked}")
    emit("\n".join(lines))
