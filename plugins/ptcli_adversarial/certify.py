"""`ptcli certify`: randomized smoothing's certificates (ptcli.vision.smoothing) for an image
classifier, per image or over a labelled data set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptcli.cli.options import DeviceOption, JsonOption, batch_size_option, model_option, paths_argument
from ptcli.errors import UsageError

#: The radii the data-set report gives certified accuracy at.
RADII = (0.0, 0.25, 0.5, 1.0)


def certify(
    checkpoint: Annotated[Path | None, typer.Argument(metavar="CKPT", help="A classify-image checkpoint (train it with adversarial.noise: gaussian to certify well) [default: the offline EfficientNet-Lite0].", show_default=False)] = None,
    paths: paths_argument("Image files, folders or globs to certify (or --data).") = None,
    model: model_option("An image classifier by name, instead of CKPT.") = None,
    data: Annotated[Path | None, typer.Option(metavar="DIR", help="A labelled ImageFolder (DIR/<class>/*, or its val/): certified accuracy at each radius.")] = None,
    sigma: Annotated[float, typer.Option(metavar="S", help="The noise's standard deviation, in pixel values of [0, 1]: the one the model was trained with.")] = 0.25,
    n: Annotated[int, typer.Option("--n", min=1, metavar="N", help="Noise draws that bound the class's probability.")] = 1000,
    n0: Annotated[int, typer.Option("--n0", min=1, metavar="N", help="Noise draws that choose the class.")] = 100,
    alpha: Annotated[float, typer.Option(metavar="A", help="The certificate fails with probability at most A.")] = 0.001,
    radii: Annotated[str, typer.Option(metavar="R,R", help="With --data: the L2 radii certified accuracy is given at.")] = ",".join(f"{r:g}" for r in RADII),
    batch_size: batch_size_option("Noisy copies per forward pass.") = 200,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed of the noise (the same draws for every input).")] = 0,
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
) -> None:
    """Certified robustness by randomized smoothing (Cohen et al., 2019): the class a model
    gives most often under Gaussian noise, and an L2 radius within which no change of the
    image can alter it (with probability 1 - alpha), or "abstain". The radius is in the pixels
    the network sees (after resizing and cropping), values in [0, 1]."""
    from ptcli.output import emit, emit_json, progress

    from ptcli.plugins.capabilities import image_classifier

    from . import RECIPE

    from ptcli.vision.imaging import IMAGE_EXTENSIONS

    if checkpoint is not None and (checkpoint.suffix.lower() in IMAGE_EXTENSIONS or checkpoint.is_dir() or "*" in str(checkpoint)):
        # `ptcli certify photo.jpg --model NAME`: the first argument is an input, not a checkpoint
        paths, checkpoint = [str(checkpoint), *(paths or [])], None
    if not 0 < sigma <= 1:
        raise UsageError(f"--sigma must be above 0 and at most 1, in pixel values of [0, 1] (got {sigma:g})")
    if not 0 < alpha < 0.5:
        raise UsageError(f"--alpha must be between 0 and 0.5, such as 0.001 (got {alpha:g})")
    if data is None and not paths:
        raise UsageError("give image files, folders or globs, or --data DIR (see `ptcli certify --help`)")
    if data is not None and paths:
        raise UsageError("give image files or --data DIR, not both")
    if data is not None and not Path(data).is_dir():
        raise UsageError(f"data folder not found: {data}")
    try:
        levels = sorted({float(r) for r in radii.split(",") if r.strip()})
    except ValueError:
        raise UsageError(f"--radii must be numbers separated by commas, such as 0,0.25,0.5 (got {radii!r})") from None
    if not levels or levels[0] < 0:
        raise UsageError(f"--radii must be numbers of at least 0 (got {radii!r})")
    if checkpoint is not None and model is not None:
        raise UsageError("give CKPT or --model, not both")
    classifier, target_device = image_classifier(model=model, weights=None, checkpoint=checkpoint, device=device, devices=RECIPE.devices.devices)
    if data is not None:
        pairs = classifier.labelled(data)
        inputs, labels = [path for path, _ in pairs], [label for _, label in pairs]
    else:
        from ptcli.inference.inputs import expand_inputs

        inputs, labels = expand_inputs(paths, IMAGE_EXTENSIONS), None
    rows, certificates, kept_labels, failed = _certify_all(classifier, target_device, inputs, labels, sigma=sigma, n=n, n0=n0, alpha=alpha,
                                             batch_size=batch_size, seed=seed, progress=progress)
    settings = {"model": classifier.source, "sigma": sigma, "n": n, "n0": n0, "alpha": alpha, "seed": seed}
    if data is None:
        if json_output:
            for row in rows:
                emit_json(row)
        else:
            for row in rows:
                emit(_human_row(row))
        _report_failures(failed, json_output)
        return
    from ptcli.vision.smoothing import certified_accuracy

    accuracy = certified_accuracy(certificates, kept_labels, levels)
    total = max(len(rows), 1)
    report = {"data": str(data), **settings, "samples": len(rows), "failed": len(failed),
              "abstain_rate": round(sum(r["label"] is None for r in rows) / total, 4),
              "clean_accuracy": round(sum(r["correct"] for r in rows) / total, 4),
              "certified_accuracy": {f"{r:g}": round(a, 4) for r, a in accuracy.items()}, "inputs": rows}
    if json_output:
        emit_json(report)
        return
    lines = [f"{len(rows)} images of {data}, sigma {sigma:g}, n {n} (n0 {n0}), alpha {alpha:g}",
             f"smoothed accuracy    {report['clean_accuracy']:.4f}   abstained {report['abstain_rate']:.4f}",
             f"{'L2 radius':<10} certified accuracy"]
    lines += [f"{r:<10g} {a:.4f}" for r, a in accuracy.items()]
    if failed:
        lines.append(f"{len(failed)} images could not be read")
    emit("\n".join(lines))


def _certify_all(classifier, device, inputs, labels, *, progress, **settings):
    """One row per readable input; (rows, their certificates, their labels, unreadable inputs)."""
    from ptcli.errors import InputError
    from ptcli.vision.smoothing import certify as certify_one

    network = classifier.network().eval()
    classes = len(classifier.labels)
    rows, certificates, kept, failed = [], [], [], []
    with progress() as bar:
        task = bar.add_task("certifying", total=len(inputs))
        for index, path in enumerate(inputs):
            try:
                x = classifier.model_input(classifier.read(path)).to(device)
            except InputError as exc:
                failed.append((path, str(exc)))
                bar.advance(task)
                continue
            result = certify_one(network, x, classes=classes, **settings)
            certificates.append(result)
            row = {"input": str(path), "label": classifier.labels[result.label] if result.label is not None else None,
                   "abstain": result.label is None, "radius": round(result.radius, 6), "p_lower": round(result.p_lower, 6),
                   "count": result.count}
            if labels is not None:
                row.update(true_label=classifier.labels[labels[index]], correct=result.label == labels[index])
                kept.append(labels[index])
            rows.append(row)
            bar.advance(task)
    return rows, certificates, kept, failed


def _human_row(row: dict) -> str:
    if row["abstain"]:
        return f"{row['input']}: abstain (the likeliest class's probability under noise may be below one half: p >= {row['p_lower']:.3f})"
    return f"{row['input']}: {row['label']}, certified within L2 radius {row['radius']:.4f} (p >= {row['p_lower']:.4f})"


def _report_failures(failed, json_output: bool) -> None:
    from ptcli.errors import InputError
    from ptcli.output import emit_json, warn

    for path, message in failed:
        if json_output:
            emit_json({"input": str(path), "error": message})
        else:
            warn(message)
    if failed:
        raise InputError(f"{len(failed)} of the images could not be read")
