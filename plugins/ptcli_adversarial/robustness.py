"""Robust accuracy over a labelled data set: clean accuracy, accuracy under attack, the attack's
success rate and the perturbations' sizes, with the sanity checks that catch a broken attack
or a defence that only hides the gradient."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class AttackSettings:
    method: str = "pgd"
    norm: str = "linf"
    eps: float = 4 / 255
    steps: int = 10
    step_size: float | None = None
    random_start: bool = True
    seed: int = 0
    #: Square's budget of model calls per input.
    queries: int = 5000
    #: Gradients averaged over this many draws of a random model or filter (None: the method's own).
    eot: int | None = None
    #: AutoAttack's set: standard or rand.
    version: str = "standard"

    def run(self, model, x, y, *, targeted: bool = False, quantize: bool = False, on_step=None, record: dict | None = None):
        """Adversarial ``x``. ``record`` gets what the method reports beyond the images: Square's
        queries per input, AutoAttack's robust count after each of its attacks."""
        from ptcli.attacks import ATTACKS

        kwargs = dict(eps=self.eps, norm=self.norm, targeted=targeted, quantize_result=quantize)
        if self.eot is not None:
            kwargs.update(eot=self.eot)
        if self.method in ("square", "autoattack"):
            kwargs.update(queries=self.queries, seed=self.seed, on_step=on_step, record=record)
        if self.method == "autoattack":
            kwargs.update(version=self.version, steps=self.steps)
        elif self.method != "fgsm" and self.method != "square":
            kwargs.update(steps=self.steps, seed=self.seed, on_step=on_step)
        if self.method == "pgd":
            kwargs.update(step_size=self.step_size, random_start=self.random_start)
        model = _expectation(model, self.eot) if self.eot and self.method in ("deepfool", "cw", "fab") else model
        return ATTACKS[self.method](model, x, y, **kwargs)


def _expectation(model, draws: int):
    """EOT for the attacks that follow logits rather than one loss (DeepFool, C&W, FAB): the
    model's logits averaged over ``draws`` forward passes, gradients included."""

    def averaged(x):
        return sum(model(x) for _ in range(draws)) / draws

    return averaged


@dataclass
class Scores:
    samples: int = 0
    clean: int = 0
    robust: int = 0
    fooled: int = 0  # of the samples classified correctly when clean
    linf: float = 0.0
    l2: float = 0.0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        n = max(self.samples, 1)
        return {"samples": self.samples, "clean_accuracy": round(self.clean / n, 4), "robust_accuracy": round(self.robust / n, 4),
                "attack_success_rate": round(self.fooled / max(self.clean, 1), 4),
                "mean_linf": round(self.linf / n, 6), "mean_l2": round(self.l2 / n, 6)}


def load_batches(classifier, data: Path, batch_size: int) -> list:
    """(pixels (B, 3, h, w), labels (B,), paths, unreadable) per batch of the labelled data,
    read once (every attack and check runs on the same batches); unreadable images are
    counted, not fatal."""
    return list(_batches(classifier, data, batch_size))


def _batches(classifier, data: Path, batch_size: int):
    import torch

    from ptcli.errors import InputError

    pairs = classifier.labelled(data)
    batch, labels, paths, failed = [], [], [], []
    for path, label in pairs:
        try:
            batch.append(classifier.model_input(classifier.read(path)))
        except InputError as exc:
            failed.append((path, str(exc)))
            continue
        labels.append(label)
        paths.append(path)
        if len(batch) == batch_size:
            yield torch.stack(batch), torch.tensor(labels), paths, failed
            batch, labels, paths, failed = [], [], [], []
    if batch or failed:
        yield (torch.stack(batch) if batch else None), torch.tensor(labels, dtype=torch.int64), paths, failed


def robust_accuracy(classifier, batches: list, settings: AttackSettings, *, device,
                    craft_on: Callable | None = None, defense: Callable | None = None, adaptive: bool = True,
                    on_batch: Callable[[int], None] | None = None, live: dict | None = None) -> Scores:
    """Score ``classifier`` on ``batches`` (load_batches) under ``settings``. ``craft_on``: the model the attack
    sees (default: the classifier; another one for a transfer attack). ``defense``: an input
    filter before the network; the attack goes through it by BPDA when ``adaptive``, else it
    attacks the bare network and the filter is applied after (how such filters are usually,
    and wrongly, evaluated). ``live["record"]`` is the running batch's record (AutoAttack's
    attack under way), for progress lines."""
    import torch

    from ptcli.attacks import straight_through

    network = classifier.network()
    defended = network if defense is None else (lambda x: network(defense(x)))
    if craft_on is not None:
        attacked = craft_on
    elif defense is None or not adaptive:
        attacked = network
    else:
        through = straight_through(defense)
        attacked = lambda x: network(through(x))  # noqa: E731
    scores = Scores()
    failed = []
    for pixels, labels, _paths, unreadable in batches:
        failed += unreadable
        if pixels is None:
            continue
        x, y = pixels.to(device), labels.to(device)
        try:
            with torch.no_grad():
                clean_ok = defended(x).argmax(1) == y
            details: dict = {}
            if live is not None:
                live["record"] = details
            adversarial = settings.run(attacked, x, y, record=details)
        except KeyboardInterrupt:
            if not scores.samples:  # nothing attacked yet: nothing to report
                raise
            scores.extra["interrupted"] = True  # a report of the images done, then exit 130
            break
        for name, count in details.get("robust_after", {}).items():
            scores.extra.setdefault("robust_after", {}).setdefault(name, 0)
            scores.extra["robust_after"][name] += count
        if "queries" in details:
            scores.extra.setdefault("queries", []).extend(int(q) for q in details["queries"])
        with torch.no_grad():
            robust_ok = defended(adversarial).argmax(1) == y
        delta = (adversarial - x).flatten(1)
        scores.samples += len(y)
        scores.clean += int(clean_ok.sum())
        scores.robust += int(robust_ok.sum())
        scores.fooled += int((clean_ok & ~robust_ok).sum())
        scores.linf += float(delta.abs().max(dim=1).values.sum())
        scores.l2 += float(delta.norm(dim=1).sum())
        if on_batch is not None:
            on_batch(len(y))
    scores.extra["failed"] = len(failed)
    return scores


def sanity_checks(run: Callable[[AttackSettings], Scores], settings: AttackSettings, main: Scores) -> list[dict]:
    """The checks a correct attack passes, each run and reported: eps 0 leaves the clean accuracy;
    half the budget or half the steps (Square: queries) never attack better; APGD is not weaker
    than a single method (for Square, the black-box one, a failure means that the gradients
    mislead: the model masks them). AutoAttack contains APGD, so it has no such check."""
    checks = []
    zero = run(replace(settings, eps=0.0))
    checks.append({"name": "eps 0 gives the clean accuracy", "ok": zero.robust == main.clean,
                   "detail": f"robust {zero.robust}/{zero.samples}, clean {main.clean}/{main.samples}"})
    half = run(replace(settings, eps=settings.eps / 2))
    checks.append({"name": "half the eps is no stronger", "ok": half.robust >= main.robust,
                   "detail": f"robust {half.robust} at eps/2, {main.robust} at eps"})
    if settings.method == "square" and settings.queries > 1:
        fewer = run(replace(settings, queries=max(1, settings.queries // 2)))
        checks.append({"name": "half the queries is no stronger", "ok": fewer.robust >= main.robust,
                       "detail": f"robust {fewer.robust} at {max(1, settings.queries // 2)} queries, {main.robust} at {settings.queries}"})
    elif settings.method not in ("fgsm", "square") and settings.steps > 1:
        fewer = run(replace(settings, steps=max(1, settings.steps // 2)))
        checks.append({"name": "half the steps is no stronger", "ok": fewer.robust >= main.robust,
                       "detail": f"robust {fewer.robust} at {max(1, settings.steps // 2)} steps, {main.robust} at {settings.steps}"})
    if settings.method not in ("apgd", "autoattack"):
        strong = run(replace(settings, method="apgd", steps=max(settings.steps, 20), eot=settings.eot))
        checks.append({"name": "APGD is no weaker than " + settings.method.upper(), "ok": strong.robust <= main.robust,
                       "detail": f"robust {strong.robust} under APGD, {main.robust} under {settings.method.upper()}"})
    return checks
