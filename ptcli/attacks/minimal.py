"""Minimal-perturbation attacks, L2: DeepFool (Moosavi-Dezfooli et al., CVPR 2016) and
Carlini-Wagner L2 (Carlini & Wagner, S&P 2017). Each looks for the smallest change that flips
the prediction, rather than the strongest within a budget; as ptcli's other attacks, the result
is then held to ``eps`` (a change larger than the budget is scaled back onto it, and then may
not fool the model), so that robust accuracy at eps means the same for every method. The
model takes pixels in [0, 1], as for ptcli.attacks."""

from __future__ import annotations

from collections.abc import Callable

#: DeepFool's overshoot past the linearised boundary, and the classes it considers (the most
#: likely ones, as the authors' code does).
OVERSHOOT, CANDIDATES = 0.02, 10


def _within(x, x_adv, eps: float):
    from .toolkit import project

    return (x + project(x_adv - x, eps, "l2")).clamp(0, 1)


def deepfool(model, x, y, *, eps: float, steps: int = 50, norm: str = "l2", targeted: bool = False,
             quantize_result: bool = False, on_step: Callable[[], None] | None = None, **_):
    """Each sample moves to the nearest boundary of its linearised classifier, among its
    ``CANDIDATES`` likeliest classes, until the prediction flips (at most ``steps`` times), with
    a 2% overshoot; then held to eps."""
    import torch

    from .toolkit import keep_successes, quantize

    if norm != "l2":
        raise ValueError("DeepFool finds the smallest L2 change: use --norm l2")
    if targeted:
        raise ValueError("DeepFool is untargeted")
    if eps <= 0 or steps < 1:
        return x.clone()
    shape = (-1,) + (1,) * (x.dim() - 1)
    total = torch.zeros_like(x)
    active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    with torch.no_grad():
        classes = model(x).topk(min(CANDIDATES, model(x[:1]).shape[1]), dim=1).indices  # y's rank may be any
    for _ in range(steps):
        point = (x + (1 + OVERSHOOT) * total).clamp(0, 1).requires_grad_(True)
        logits = model(point)
        active &= logits.detach().argmax(dim=1) == y
        if not active.any():
            break
        true_logit = logits.gather(1, y[:, None]).squeeze(1)
        true_grad, = torch.autograd.grad(true_logit.sum(), point, retain_graph=True)
        best_ratio = torch.full((x.shape[0],), float("inf"), device=x.device)
        best_step = torch.zeros_like(x)
        for k in range(classes.shape[1]):
            other = classes[:, k]
            usable = other != y
            other_logit = logits.gather(1, other[:, None]).squeeze(1)
            other_grad, = torch.autograd.grad(other_logit.sum(), point, retain_graph=True)
            w = other_grad - true_grad
            f = (other_logit - true_logit).detach()
            w_norm = w.flatten(1).norm(dim=1).clamp(min=1e-12)
            ratio = f.abs() / w_norm
            better = usable & (ratio < best_ratio)
            step = ((f.abs() + 1e-4) / w_norm ** 2).view(shape) * w
            best_ratio = torch.where(better, ratio, best_ratio)
            best_step = torch.where(better.view(shape), step, best_step)
        total = total + torch.where(active.view(shape), best_step, torch.zeros_like(best_step))
        if on_step is not None:
            on_step()
    result = _within(x, (x + (1 + OVERSHOOT) * total).clamp(0, 1), eps).detach()
    if quantize_result:
        result = keep_successes(model, x, y, False, quantize(x, result, eps, "l2"), result, eps, "l2")
    return result


def carlini_wagner(model, x, y, *, eps: float, steps: int = 100, norm: str = "l2", targeted: bool = False,
                   quantize_result: bool = False, searches: int = 5, initial_c: float = 1.0, kappa: float = 0.0,
                   learning_rate: float = 0.01, on_step: Callable[[], None] | None = None, **_):
    """C&W L2: Adam in tanh space on ||x' - x||^2 + c * max(margin, -kappa), ``steps`` steps for
    each of ``searches`` values of c found by binary search per sample (c grows tenfold until an
    attack succeeds, then bisects); the smallest successful change is kept, then held to eps.
    ``targeted``: ``y`` are the targets."""
    import torch

    from .toolkit import keep_successes, quantize

    if norm != "l2":
        raise ValueError("Carlini-Wagner here is the L2 attack: use --norm l2")
    if eps <= 0 or steps < 1:
        return x.clone()
    batch = x.shape[0]
    low = torch.zeros(batch, device=x.device)
    high = torch.full((batch,), float("inf"), device=x.device)
    c = torch.full((batch,), float(initial_c), device=x.device)
    best = x.clone()
    best_norm = torch.full((batch,), float("inf"), device=x.device)
    start = torch.atanh((x * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))
    for _search in range(searches):
        w = start.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([w], lr=learning_rate)
        found = torch.zeros(batch, dtype=torch.bool, device=x.device)
        for _ in range(steps):
            candidate = (torch.tanh(w) + 1) / 2
            logits = model(candidate)
            true = logits.gather(1, y[:, None]).squeeze(1)
            others = logits.masked_fill(torch.nn.functional.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(dim=1)
            margin = (others - true) if targeted else (true - others)
            distance = (candidate - x).flatten(1).pow(2).sum(dim=1)
            loss = (distance + c * margin.clamp(min=-kappa)).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                fooled = (logits.argmax(dim=1) == y) if targeted else (logits.argmax(dim=1) != y)
                smaller = fooled & (distance.sqrt() < best_norm)
                best[smaller] = candidate.detach()[smaller]
                best_norm = torch.where(smaller, distance.sqrt(), best_norm)
                found |= fooled
            if on_step is not None:
                on_step()
        # per sample: a success lowers c (bisect down), a failure raises it (tenfold until bounded)
        high = torch.where(found, torch.minimum(high, c), high)
        low = torch.where(found, low, torch.maximum(low, c))
        c = torch.where(torch.isinf(high), c * 10, (low + high) / 2)
    result = _within(x, best, eps).detach()
    if quantize_result:
        result = keep_successes(model, x, y, targeted, quantize(x, result, eps, "l2"), result, eps, "l2")
    return result
