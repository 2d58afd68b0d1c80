"""`attack --data DIR`: robust accuracy over a labelled data set as one report, and its
words without --json."""

from __future__ import annotations

from pathlib import Path


def robustness_report(classifier, target_device, data: Path, settings, *, source: Path | None, defense: str | None,
                      checks: bool, batch_size: int) -> tuple[dict, list[str]]:
    """`attack --data`'s report (clean and robust accuracy, the method's details, a defence's
    adaptive and plain figures, a transfer's rate, the sanity checks), and its warnings."""
    from ptcli.vision.defenses import parse_filter
    from ptcli.output import progress, warn

    from .robustness import load_batches, robust_accuracy, sanity_checks

    in_filter = parse_filter(defense) if defense is not None else None
    if in_filter is not None and in_filter.random:
        import torch

        torch.manual_seed(settings.seed)  # the filter's draws, so that a run can be repeated
        if settings.eot is None and not (settings.method == "autoattack" and settings.version == "rand"):
            warn(f"{in_filter.name} draws anew on every call: without --eot N (or --method autoattack --version rand) "
                 "the attack follows one random draw per step and overstates robustness")
    craft_on = None
    if source is not None:
        from .transfer import source_model

        craft_on = source_model(source, classifier, target_device)
    batches = load_batches(classifier, data, batch_size)
    total = sum(len(labels) for _, labels, _, _ in batches)
    with progress() as bar:
        def run(s, **kwargs):
            live: dict = {}
            task = bar.add_task(f"{s.method} eps {s.eps:.4g}", total=total, line=lambda task: _line(task, live))
            try:
                return robust_accuracy(classifier, batches, s, device=target_device, craft_on=craft_on,
                                       defense=in_filter, on_batch=lambda n: bar.advance(task, n), live=live, **kwargs)
            finally:
                bar.remove_task(task)

        main = run(settings)
        report = {"data": str(data), "model": classifier.source, "method": settings.method, "norm": settings.norm,
                  "eps": round(settings.eps, 6), "steps": settings.steps, **main.as_dict(), "failed": main.extra["failed"]}
        report.update(method_details(settings, main))
        if main.extra.get("interrupted"):  # Ctrl-C: the images attacked so far, and no further runs
            report["interrupted"] = f"Ctrl-C after {main.samples} of {total} images: the figures are theirs"
            return report, []
        if in_filter is not None:
            naive = run(settings, adaptive=False)
            report.update(defense=in_filter.name, robust_accuracy_non_adaptive=naive.as_dict()["robust_accuracy"])
            report["gradient_masking"] = naive.robust - main.robust > 0.1 * max(main.samples, 1)
        if source is not None:
            report.update(source=str(source), transfer_rate=report["attack_success_rate"])
        if checks and source is None:
            report["checks"] = sanity_checks(run, settings, main)
    warnings = []
    if report.get("gradient_masking"):
        warnings.append(f"{report['defense']} only masks gradients: {report['robust_accuracy_non_adaptive']:.2f} robust "
                        f"accuracy against the plain attack, {report['robust_accuracy']:.2f} against the adaptive one (BPDA)")
    if any(not check["ok"] for check in report.get("checks", [])):
        warnings.append("a sanity check failed: the attack may be broken or the model masks its gradients")
    return report, warnings


def method_details(settings, main) -> dict:
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


def _line(task, live: dict) -> str:
    """A progress line of `attack --data`: images done, rate, time left, and AutoAttack's attack
    under way (its batch's images go through each attack in turn)."""
    from ptcli.output import counted_line

    running = (live.get("record") or {}).get("running")
    return counted_line(task) + (f"; running {running}" if running else "")


def human_report(r: dict) -> str:
    budget = f"{r['queries']} queries" if r["method"] == "square" else f"{r['steps']} steps"
    if r["method"] == "autoattack":
        budget = f"version {r['version']}, {r['steps']} steps" + (f", Square {r['queries']} queries" if r["version"] == "standard" else "")
    lines = [f"{r['samples']} images of {r['data']}, {r['method'].upper()} {r['norm']} eps {r['eps']:.4g} ({r['eps'] * 255:.1f}/255), "
             f"{budget}" + (f", EOT over {r['eot']} draws" if "eot" in r else ""),
             f"clean accuracy       {r['clean_accuracy']:.4f}",
             f"robust accuracy      {r['robust_accuracy']:.4f}" + (" (adaptive: BPDA through the filter)" if "defense" in r else ""),
             f"attack success rate  {r['attack_success_rate']:.4f}",
             f"mean L-inf / L2      {r['mean_linf']:.4f} / {r['mean_l2']:.4f}"]
    if "interrupted" in r:
        lines.insert(0, f"partial report: {r['interrupted']}")
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
