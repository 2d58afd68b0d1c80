"""AutoAttack (Croce & Hein, ICML 2020), the set robust accuracy is reported against (RobustBench):
its attacks run in turn, each only on the samples that every earlier one failed to fool, and
each sample keeps the first adversarial point found. Within an APGD run too, a fooled sample
leaves the batch at the next checkpoint (the reference attacks it for all 100 steps), which is
most of ptcli's speed on models that are not robust.

- ``standard``: APGD-CE (100 steps), APGD-T (100 steps towards each of the 9 likeliest other
  classes), FAB-T (100 steps, 9 targets), Square (5000 queries, black-box).
- ``rand``, for randomised defences: APGD-CE and APGD-DLR, each gradient the mean of 20 draws
  (EOT).

With fewer than 4 classes (3 for APGD-DLR), DLR's denominators do not exist; the targeted and
DLR runs then use cross-entropy (towards the target), as said in docs/adversarial.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable

VERSIONS = {"standard": ("apgd-ce", "apgd-t", "fab-t", "square"), "rand": ("apgd-ce", "apgd-dlr")}
#: AutoAttack's fixed settings.
STEPS, TARGETS, QUERIES, RAND_EOT = 100, 9, 5000, 20


def autoattack(model, x, y, *, eps: float, norm: str = "linf", version: str = "standard", steps: int = STEPS,
               queries: int = QUERIES, eot: int | None = None, targeted: bool = False, quantize_result: bool = False,
               seed: int = 0, on_step: Callable[[], None] | None = None, record: dict | None = None, **_):
    """Adversarial ``x``: the first success of each sample over the version's attacks.
    ``record`` gets ``robust_after`` (attack -> how many samples were still classified
    correctly after it, in order), ``seconds`` (per attack) and ``queries`` (Square's, per
    sample; 0 where it did not run)."""
    import torch

    from .gradient import apgd
    from .toolkit import keep_successes, quantize
    from .fab import fab_targeted
    from .square import square

    if version not in VERSIONS:
        raise ValueError(f"version must be one of {', '.join(VERSIONS)}")
    if targeted:
        raise ValueError("AutoAttack is untargeted (APGD-T and FAB-T choose their own targets)")
    draws = eot if eot is not None else (RAND_EOT if version == "rand" else 1)
    result = x.clone()
    with torch.no_grad():
        logits = model(x)
    classes = logits.shape[1]
    robust = logits.argmax(dim=1) == y
    after: dict[str, int] = {"clean": int(robust.sum())}
    spent = torch.zeros(x.shape[0], dtype=torch.long)
    common = dict(eps=eps, norm=norm, seed=seed, on_step=on_step)
    seconds: dict[str, float] = {}
    for name in VERSIONS[version]:
        if record is not None:
            record["running"] = name  # for progress lines, while it runs
        todo = robust.nonzero().flatten()
        started = time.perf_counter()
        if todo.numel() == 0:
            after[name], seconds[name] = 0, 0.0
            continue
        xs, ys = x[todo], y[todo]
        if name == "apgd-ce":
            found = apgd(model, xs, ys, steps=steps, eot=draws, first_success=True, **common)
        elif name == "apgd-dlr":
            found = apgd(model, xs, ys, steps=steps, eot=draws, loss="dlr" if classes >= 3 else "ce", first_success=True, **common)
        elif name == "apgd-t":
            found = _apgd_targeted(model, xs, ys, steps, draws, classes, common)
        elif name == "fab-t":
            found = fab_targeted(model, xs, ys, steps=steps, targets=TARGETS, **common)
        else:
            details: dict = {}
            found = square(model, xs, ys, queries=queries, record=details, **common)
            spent[todo.cpu()] = details["queries"]
        with torch.no_grad():
            fooled = model(found).argmax(dim=1) != ys
        result[todo[fooled]] = found[fooled]
        robust[todo[fooled]] = False
        after[name], seconds[name] = int(robust.sum()), time.perf_counter() - started
    if record is not None:
        record["robust_after"], record["seconds"] = after, seconds
        record["queries"] = spent
        record.pop("running", None)
    if quantize_result:
        result = keep_successes(model, x, y, False, quantize(x, result, eps, norm), result, eps, norm)
    return result.detach()


def _apgd_targeted(model, x, y, steps, draws, classes, common):
    """APGD-T: APGD on the targeted DLR loss towards each of the likeliest other classes in
    turn, only on the samples not fooled yet."""
    import torch

    from .gradient import apgd

    with torch.no_grad():
        ranked = model(x).argsort(dim=1, descending=True)
        robust = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    result = x.clone()
    for rank in range(1, min(TARGETS, classes - 1) + 1):
        todo = robust.nonzero().flatten()
        if todo.numel() == 0:
            break
        found = apgd(model, x[todo], y[todo], steps=steps, eot=draws, target=ranked[todo, rank],
                     loss="dlr-targeted" if classes >= 4 else "ce-targeted", first_success=True, **common)
        with torch.no_grad():
            fooled = model(found).argmax(dim=1) != y[todo]
        result[todo[fooled]] = found[fooled]
        robust[todo[fooled]] = False
    return result
