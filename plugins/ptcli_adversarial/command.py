"""`ptcli attack` and `ptcli defend`. Heavy imports happen inside functions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptcli.errors import UsageError
from ptcli.cli.options import DeviceOption, JsonOption, batch_size_option, checkpoint_option, model_option, paths_argument, weights_option

from . import RECIPE

MethodOption = Annotated[str, typer.Option(metavar="METHOD", help="fgsm (one step), pgd (projected gradient descent), apgd (APGD-CE: step sizes adapt), autoattack (APGD-CE, APGD-T, FAB-T and Square in turn: the standard to report), square (black-box: model outputs only, --queries), fab (FAB-T: smallest change towards the 9 likeliest other classes); deepfool and cw (Carlini-Wagner, binary search over c) look for the smallest L2 change (--norm l2), then hold it to --eps.")]
NormOption = Annotated[str, typer.Option(metavar="linf|l2", help="The perturbation's norm.")]
EpsOption = Annotated[str, typer.Option(metavar="E", help="Budget in pixel values of [0, 1]: 4/255 or 0.0157.")]
StepsOption = Annotated[int | None, typer.Option(min=1, metavar="N", help="Attack steps (pgd, apgd, deepfool; cw: Adam steps for each of its 5 values of c; fab and each of autoattack's attacks) [default: 10; fab and autoattack: 100].", show_default=False)]
QueriesOption = Annotated[int, typer.Option(min=1, metavar="N", help="Square's budget of model calls per input (also within autoattack).")]
EotOption = Annotated[int | None, typer.Option(min=1, metavar="N", help="EOT: average each gradient over N draws, against a random model or filter (--defense noise:0.25) [default: 1; autoattack --version rand: 20].", show_default=False)]
VersionOption = Annotated[str, typer.Option(metavar="standard|rand", help="autoattack's set: standard (APGD-CE, APGD-T, FAB-T, Square), or rand for randomised defences (APGD-CE, APGD-DLR, each with EOT over 20 draws).")]

#: Steps when --steps is not given.
DEFAULT_STEPS = {"fab": 100, "autoattack": 100}


def _settings(method: str, norm: str, eps: str, steps: int | None, step_size: str | None, random_start: bool, seed: int,
              queries: int = 5000, eot: int | None = None, version: str = "standard"):
    from ptcli.attacks import ATTACKS, BLACK_BOX, L2_ONLY, NORMS, parse_eps
    from ptcli.attacks.autoattack import VERSIONS

    from .robustness import AttackSettings

    if method not in ATTACKS:
        raise UsageError(f"--method must be one of {', '.join(ATTACKS)} (got {method!r})")
    if norm not in NORMS:
        raise UsageError(f"--norm must be one of {', '.join(NORMS)} (got {norm!r})")
    if method in L2_ONLY and norm != "l2":
        raise UsageError(f"--method {method} finds the smallest L2 change: add --norm l2 (and an L2 --eps such as 0.5)")
    if version not in VERSIONS:
        raise UsageError(f"--version must be one of {', '.join(VERSIONS)} (got {version!r})")
    if version != "standard" and method != "autoattack":
        raise UsageError("--version goes with --method autoattack")
    if eot is not None and method in BLACK_BOX:
        raise UsageError(f"--eot averages gradients; --method {method} uses none (it already reads the model's outputs as they are)")
    return AttackSettings(method=method, norm=norm, eps=parse_eps(eps), steps=steps or DEFAULT_STEPS.get(method, 10),
                          step_size=parse_eps(step_size) if step_size is not None else None,
                          random_start=random_start, seed=seed, queries=queries, eot=eot, version=version)


def _classifier(model, weights, checkpoint, device):
    from ptcli.plugins.capabilities import image_classifier

    return image_classifier(model=model, weights=weights, checkpoint=checkpoint, device=device, devices=RECIPE.devices.devices)


def attack(
    paths: paths_argument("Image files, folders or globs to perturb.") = None,
    model: model_option("An image classifier by name (default: efficientnet_lite0, offline).") = None,
    weights: weights_option("Local weights for --model.") = None,
    checkpoint: checkpoint_option("A classify-image checkpoint.") = None,
    method: MethodOption = "pgd",
    norm: NormOption = "linf",
    eps: EpsOption = "4/255",
    steps: StepsOption = None,
    queries: QueriesOption = 5000,
    eot: EotOption = None,
    version: VersionOption = "standard",
    step_size: Annotated[str | None, typer.Option(metavar="A", help="PGD's step [default: 2.5 * eps / steps].", show_default=False)] = None,
    random_start: Annotated[bool, typer.Option("--random-start/--no-random-start", help="PGD starts at a random point of the eps ball.")] = True,
    target: Annotated[str | None, typer.Option(metavar="LABEL", help="Targeted: push each image towards this class.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="Where DIR/<name>_adv.png goes (lossless, original size).")] = Path("."),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing files in DIR.")] = False,
    data: Annotated[Path | None, typer.Option(metavar="DIR", help="Robust accuracy over a labelled ImageFolder (DIR/<class>/*, or its val/) instead of perturbing files.")] = None,
    source: Annotated[Path | None, typer.Option(metavar="CKPT", help="With --data: craft on this checkpoint, score on the model (a black-box transfer attack).")] = None,
    defense: Annotated[str | None, typer.Option(metavar="F", help="With --data: an input filter before the model, jpeg:75, median:3, bits:4 or noise:0.25 (random: add --eot); the adaptive attack (BPDA) is run too.")] = None,
    checks: Annotated[bool, typer.Option("--checks/--no-checks", help="With --data: run the attack's sanity checks (eps 0, half eps, half steps, APGD).")] = True,
    batch_size: batch_size_option("Images per attack batch (--data).") = 32,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed of the random start.")] = 0,
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
) -> None:
    """Craft adversarial images against an image classifier (EfficientNet-Lite0 by default,
    offline). The perturbation lives in the original image's pixels: resizing, cropping and
    normalising happen inside the attacked model, and each result is saved as a lossless PNG
    at the original size whose change is within --eps. Each saved file is classified again the
    way `ptcli classify-image` does; "success" is what that gives. With --data, prints clean
    and robust accuracy instead."""
    settings = _settings(method, norm, eps, steps, step_size, random_start, seed, queries, eot, version)
    if method in ("deepfool", "fab", "autoattack") and target is not None:
        raise UsageError(f"--method {method} is untargeted (or picks its own targets): drop --target, or use --method cw, pgd or square")
    if data is not None:
        if paths:
            raise UsageError("give image files or --data DIR, not both")
        _robustness(model, weights, checkpoint, data, source, defense, checks, settings, batch_size, device, json_output)
        return
    if source is not None or defense is not None:
        raise UsageError("--source and --defense go with --data DIR")
    if not paths:
        raise UsageError("give at least one image file, folder or glob, or --data DIR (see `ptcli attack --help`)")
    from ptcli.inference.inputs import expand_inputs, output_folder

    output_folder(output, "the adversarial images")

    from ptcli.vision.imaging import IMAGE_EXTENSIONS

    inputs = expand_inputs(paths, IMAGE_EXTENSIONS)
    classifier, target_device = _classifier(model, weights, checkpoint, device)
    from ptcli.inference.results import ResultFormat, emit_results
    from ptcli.inference.runner import run_to_files

    from .predictor import Attacker

    attacker = Attacker(classifier, target_device, settings=settings, target=target)
    results = run_to_files(attacker, inputs, output=output, suffix="_adv", overwrite=overwrite, description="attacking")
    fmt = ResultFormat(human=_human_file, fields=lambda path, r: r, failed="could not be attacked")
    emit_results(results, fmt, total=len(inputs), json_output=json_output)


def _human_file(path, r: dict) -> str:
    outcome = "fooled" if r["success"] else "NOT fooled (the saved file keeps its label)"
    return (f"{path} -> {r['output']}: {r['clean']['label']} ({r['clean']['score']:.3f}) -> "
            f"{r['adversarial']['label']} ({r['adversarial']['score']:.3f}), {outcome}; "
            f"L-inf {r['linf'] * 255:.1f}/255, L2 {r['l2']:.3f}")


def _robustness(model, weights, checkpoint, data, source, defense, checks, settings, batch_size, device, json_output):
    from ptcli.vision.defenses import parse_filter
    from ptcli.output import emit, emit_json, progress, warn

    from .robustness import load_batches, robust_accuracy, sanity_checks

    if not Path(data).is_dir():
        raise UsageError(f"data folder not found: {data}")
    in_filter = parse_filter(defense) if defense is not None else None
    if in_filter is not None and in_filter.random:
        import torch

        torch.manual_seed(settings.seed)  # the filter's draws, so that a run can be repeated
        if settings.eot is None and not (settings.method == "autoattack" and settings.version == "rand"):
            warn(f"{in_filter.name} draws anew on every call: without --eot N (or --method autoattack --version rand) "
                 "the attack follows one random draw per step and overstates robustness")
    classifier, target_device = _classifier(model, weights, checkpoint, device)
    craft_on = None
    if source is not None:
        from .transfer import source_model

        craft_on = source_model(source, classifier, target_device)
    batches = load_batches(classifier, data, batch_size)
    total = sum(len(labels) for _, labels, _, _ in batches)
    with progress() as bar:
        def run(s, **kwargs):
            task = bar.add_task(f"{s.method} eps {s.eps:.4g}", total=total)
            try:
                return robust_accuracy(classifier, batches, s, device=target_device, craft_on=craft_on,
                                       defense=in_filter, on_batch=lambda n: bar.advance(task, n), **kwargs)
            finally:
                bar.remove_task(task)

        main = run(settings)
        report = {"data": str(data), "model": classifier.source, "method": settings.method, "norm": settings.norm,
                  "eps": round(settings.eps, 6), "steps": settings.steps, **main.as_dict(), "failed": main.extra["failed"]}
        report.update(_method_details(settings, main))
        if in_filter is not None:
            naive = run(settings, adaptive=False)
            report.update(defense=in_filter.name, robust_accuracy_non_adaptive=naive.as_dict()["robust_accuracy"])
            report["gradient_masking"] = naive.robust - main.robust > 0.1 * max(main.samples, 1)
        if source is not None:
            report.update(source=str(source), transfer_rate=report["attack_success_rate"])
        if checks and source is None:
            report["checks"] = sanity_checks(run, settings, main)
    if json_output:
        emit_json(report)
    else:
        emit(_human_report(report))
    if report.get("gradient_masking"):
        warn(f"{report['defense']} only masks gradients: {report['robust_accuracy_non_adaptive']:.2f} robust accuracy "
             f"against the plain attack, {report['robust_accuracy']:.2f} against the adaptive one (BPDA)")
    if any(not check["ok"] for check in report.get("checks", [])):
        warn("a sanity check failed: the attack may be broken or the model masks its gradients")


def _method_details(settings, main) -> dict:
    """What a method adds to the --data report: AutoAttack's robust accuracy after each of its
    attacks, Square's queries, the EOT draws."""
    details = {}
    if settings.method == "autoattack":
        details["version"] = settings.version
        n = max(main.samples, 1)
        details["attacks"] = [{"attack": name, "robust_accuracy": round(count / n, 4)}
                              for name, count in main.extra.get("robust_after", {}).items() if name != "clean"]
    if settings.method in ("square", "autoattack"):
        queries = [q for q in main.extra.get("queries", []) if q > 0]  # AutoAttack: 0 where Square did not run
        details["queries"] = settings.queries
        details["mean_queries"] = round(sum(queries) / max(len(queries), 1), 1)
    if settings.eot is not None or (settings.method == "autoattack" and settings.version == "rand"):
        details["eot"] = settings.eot or 20
    return details


def _human_report(r: dict) -> str:
    budget = f"{r['queries']} queries" if r["method"] == "square" else f"{r['steps']} steps"
    if r["method"] == "autoattack":
        budget = f"version {r['version']}, {r['steps']} steps" + (f", Square {r['queries']} queries" if r["version"] == "standard" else "")
    lines = [f"{r['samples']} images of {r['data']}, {r['method'].upper()} {r['norm']} eps {r['eps']:.4g} ({r['eps'] * 255:.1f}/255), "
             f"{budget}" + (f", EOT over {r['eot']} draws" if "eot" in r else ""),
             f"clean accuracy       {r['clean_accuracy']:.4f}",
             f"robust accuracy      {r['robust_accuracy']:.4f}" + (" (adaptive: BPDA through the filter)" if "defense" in r else ""),
             f"attack success rate  {r['attack_success_rate']:.4f}",
             f"mean L-inf / L2      {r['mean_linf']:.4f} / {r['mean_l2']:.4f}"]
    if "attacks" in r:
        lines.append("robust accuracy after each attack, in turn:")
        lines.append(f"  {'clean':<10} {r['clean_accuracy']:.4f}")
        lines += [f"  {row['attack']:<10} {row['robust_accuracy']:.4f}" for row in r["attacks"]]
    if "mean_queries" in r:
        lines.append(f"mean queries         {r['mean_queries']:.1f} of {r['queries']} (Square, per input it ran on)")
    if "defense" in r:
        lines.append(f"defense {r['defense']}: robust {r['robust_accuracy_non_adaptive']:.4f} against the plain attack")
    if "transfer_rate" in r:
        lines.append(f"transfer rate        {r['transfer_rate']:.4f} (crafted on {r['source']})")
    for check in r.get("checks", []):
        lines.append(f"check: {check['name']}: {'ok' if check['ok'] else 'FAILED'} ({check['detail']})")
    if r.get("failed"):
        lines.append(f"{r['failed']} images could not be read")
    return "\n".join(lines)


def defend(
    checkpoint: Annotated[Path | None, typer.Argument(metavar="CKPT", help="A classify-image checkpoint (default: the offline EfficientNet-Lite0).", show_default=False)] = None,
    data: Annotated[Path | None, typer.Option(metavar="DIR", help="A labelled ImageFolder (DIR/<class>/*, or its val/).")] = None,
    model: model_option("An image classifier by name, instead of CKPT.") = None,
    filters: Annotated[str, typer.Option("--filters", metavar="F,G", help="The input filters compared.")] = "jpeg:75,median:3,bits:4",
    method: MethodOption = "pgd",
    norm: NormOption = "linf",
    eps: EpsOption = "4/255",
    steps: StepsOption = None,
    batch_size: batch_size_option("Images per attack batch.") = 32,
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
) -> None:
    """One table: clean and robust accuracy of a classifier with no defence and with each input
    filter, under the plain attack (which does not see the filter) and the adaptive one (BPDA:
    through the filter as if it were the identity). Where the two differ, the filter masks
    gradients rather than making the model robust."""
    from ptcli.vision.defenses import parse_filter
    from ptcli.output import emit, emit_json, progress

    from .robustness import load_batches, robust_accuracy

    if data is None:
        raise UsageError("give --data DIR, a labelled ImageFolder")
    if not data.is_dir():
        raise UsageError(f"data folder not found: {data}")
    settings = _settings(method, norm, eps, steps, None, True, 0)
    chosen = [parse_filter(f.strip()) for f in filters.split(",") if f.strip()]
    classifier, target_device = _classifier(model, None, checkpoint, device)
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
