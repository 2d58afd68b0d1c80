"""The gradient attacks: FGSM, PGD (L-inf or L2, with a random start) and APGD-CE (Croce &
Hein, 2020), the step-size-free attack that AutoAttack starts with."""

from __future__ import annotations

from collections.abc import Callable

from .toolkit import (NORMS, _ascent, _loss_and_grad, _objective, _random_start, dlr, dlr_targeted, keep_successes,  # noqa: F401
                      project, quantize, succeeded)

def pgd(model, x, y, *, eps: float, steps: int = 10, step_size: float | None = None, norm: str = "linf",
        random_start: bool = True, targeted: bool = False, quantize_result: bool = False, seed: int = 0,
        on_step: Callable[[], None] | None = None, eot: int = 1, **_):
    """Projected gradient descent (Madry et al.): ``steps`` signed (L-inf) or normalised (L2)
    gradient steps of ``step_size`` (default 2.5 * eps / steps), each projected back into the
    ball. ``random_start``: begin at a random point of the ball (seeded by ``seed``). ``eot``:
    each gradient is the mean of that many draws of a random model."""
    import torch

    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}")
    if eps <= 0 or steps < 1:
        return x.clone()
    step = step_size if step_size is not None else 2.5 * eps / steps
    generator = torch.Generator().manual_seed(seed)
    start = _random_start(x, eps, norm, generator) if random_start else torch.zeros_like(x)
    shape = (-1,) + (1,) * (x.dim() - 1)
    # L-inf: the ball and the pixel range are one box per pixel, so each step is one clamp.
    low, high = ((-x).clamp(min=-eps), (1 - x).clamp(max=eps)) if norm == "linf" else (-x, 1 - x)
    delta = torch.clamp(start, low, high)
    best = x.clone()
    done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(steps):
        point = x + delta
        _, grad, logits = _loss_and_grad(model, point, lambda z: _objective(z, y, targeted), eot)
        fooled = succeeded(logits, y, targeted)
        best[fooled] = point.detach()[fooled]  # copies only those rows
        done |= fooled
        if norm == "linf":
            delta = torch.clamp(delta + step * grad.sign(), low, high)
        else:
            delta = torch.clamp(project(delta + step * _ascent(grad, norm), eps, norm), low, high)
        if on_step is not None:
            on_step()
    result = torch.where(done.view(shape), best, x + delta)
    if quantize_result:
        result = keep_successes(model, x, y, targeted, quantize(x, result, eps, norm), result, eps, norm)
    return result.detach()


def fgsm(model, x, y, *, eps: float, norm: str = "linf", targeted: bool = False, quantize_result: bool = False,
         eot: int = 1, **_):
    """The fast gradient sign method (Goodfellow et al.): one step of size eps, from x itself."""
    return pgd(model, x, y, eps=eps, steps=1, step_size=eps, norm=norm, random_start=False, targeted=targeted,
               quantize_result=quantize_result, eot=eot)


def apgd_start(x, eps: float, norm: str, generator=None):
    """APGD's random start as published: a point on the edge of the eps ball (L-inf: uniform
    noise scaled so that its largest value is eps; L2: a Gaussian direction of length eps)."""
    import torch

    shape = (-1,) + (1,) * (x.dim() - 1)
    if norm == "linf":
        t = 2 * torch.rand(x.shape, generator=generator, device="cpu").to(x) - 1
        return (x + eps * t / t.reshape(t.shape[0], -1).abs().max(dim=1)[0].view(shape)).clamp(0, 1)
    t = torch.randn(x.shape, generator=generator, device="cpu").to(x)
    return (x + eps * t / ((t ** 2).sum(dim=tuple(range(1, t.dim())), keepdim=True).sqrt() + 1e-12)).clamp(0, 1)


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations (0-based) after which APGD checks its step size: the first after 22% of
    the steps, then at intervals 3% shorter each time, down to 6% (Croce & Hein's schedule,
    rounded down as their code does)."""
    first, shortest, decrease = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    points, interval, at = [], first, first - 1
    while at < steps:
        points.append(at)
        interval = max(interval - decrease, shortest)
        at += interval
    return points


def apgd(model, x, y, *, eps: float, steps: int = 100, norm: str = "linf", targeted: bool = False,
         quantize_result: bool = False, seed: int = 0, rho: float = 0.75, on_step: Callable[[], None] | None = None,
         start=None, trace: Callable[[dict], None] | None = None, loss: str = "ce", target=None, eot: int = 1,
         first_success: bool = False, **_):
    """APGD-CE (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
    diverse parameter-free attacks", ICML 2020), as their reference code runs it: from a random
    point on the edge of the eps ball, ``steps`` steps of PGD with momentum (0.75) whose step
    size starts at 2 eps and halves, per sample, at the checkpoints of ``apgd_checkpoints``
    where (1) the loss rose from one step to the next in at most ``rho`` of the steps since the
    last checkpoint, or (2) the step size was not halved at the last checkpoint and the best
    loss has not risen since; a halving restarts from the best point and its gradient.
    ``start``: the first point (else the published random start, from ``seed``); ``trace``
    gets each step's losses and step sizes (the schedule, for a check against the reference).
    ``loss``: "ce", "dlr", or "dlr-targeted" (or "ce-targeted") towards ``target`` (APGD-T;
    success is then any wrong class, as in AutoAttack). ``eot``: gradients averaged over that many
    draws. ``first_success``: a sample leaves the batch at the first checkpoint after it is
    fooled, keeping that point (what robust accuracy needs; every sample's path is its own, so
    the others' are unchanged), rather than pushing its loss on for all the steps."""
    import torch

    if eps <= 0 or steps < 1:
        return x.clone()
    shape = (-1,) + (1,) * (x.dim() - 1)
    batch = x.shape[0]
    result, x_all, y_all = x.clone(), x, y
    live = torch.arange(batch, device=x.device)  # the samples still attacked, as rows of result
    checkpoints = set(apgd_checkpoints(steps))
    intervals = iter([b - a for a, b in zip([-1, *sorted(checkpoints)], sorted(checkpoints))])

    if loss == "dlr-targeted":
        loss_of, targeted = (lambda z: dlr_targeted(z, y, target)), False
    elif loss == "ce-targeted":  # APGD-T's loss where there are too few classes for DLR's
        loss_of, targeted = (lambda z: _objective(z, target, True)), False
    elif loss == "dlr":
        loss_of = lambda z: dlr(z, y) if not targeted else -dlr(z, y)  # noqa: E731
    else:
        loss_of = lambda z: _objective(z, y, targeted)  # noqa: E731

    def loss_and_grad(point):
        return _loss_and_grad(model, point, loss_of, eot)

    x_adv = start.clone() if start is not None else apgd_start(x, eps, norm, torch.Generator().manual_seed(seed))
    loss, grad, logits = loss_and_grad(x_adv)
    done = succeeded(logits, y, targeted)
    found = torch.where(done.view(shape), x_adv, x)
    best_loss, best_x, best_grad = loss.clone(), x_adv.clone(), grad.clone()
    eta = torch.full((batch,), 2.0 * eps, device=x.device)
    # Every step's loss, zeros before the first: the reference compares step 0 with that zero.
    history = torch.zeros(steps, batch, device=x.device)
    best_at_check = best_loss.clone()
    halved_at_check = torch.ones(batch, dtype=torch.bool, device=x.device)
    x_old, interval = x_adv.clone(), next(intervals)

    def norm2(t):
        return (t ** 2).sum(dim=tuple(range(1, t.dim())), keepdim=True).sqrt()

    def into_ball(point, slack: float = 0.0):
        # The reference's own arithmetic (its L2 projection differs from project() in the last
        # bits, and over 100 steps a last bit can flip a checkpoint's decision).
        if norm == "linf":
            return torch.min(torch.max(point, x - eps), x + eps).clamp(0, 1)
        d = point - x
        return (x + d / (norm2(d) + 1e-12) * torch.clamp(norm2(d) + slack, max=eps)).clamp(0, 1)

    for i in range(steps):
        alpha = 1.0 if i == 0 else 0.75
        # In the reference's order of operations: (eta * grad) / |grad|, not eta * (grad / |grad|),
        # whose last bits differ and, over 100 steps, can flip a checkpoint's decision.
        step = eta.view(shape) * grad.sign() if norm == "linf" else eta.view(shape) * grad / (norm2(grad) + 1e-12)
        stepped = into_ball(x_adv + step)
        moved = x_adv + (stepped - x_adv) * alpha + (x_adv - x_old) * (1 - alpha)
        x_old, x_adv = x_adv, into_ball(moved, slack=1e-12)
        loss, grad, logits = loss_and_grad(x_adv)
        fooled = succeeded(logits, y, targeted)
        found[fooled] = x_adv[fooled]
        done |= fooled
        history[i] = loss
        improved = loss > best_loss
        best_x[improved], best_grad[improved], best_loss[improved] = x_adv[improved], grad[improved], loss[improved]
        if trace is not None:
            trace({"step": i, "loss": loss.clone(), "step_size": eta.clone(), "best_loss": best_loss.clone()})
        if i in checkpoints:
            rises = sum((history[i - j] > history[i - j - 1]).float() for j in range(interval))
            oscillating = rises <= interval * rho
            no_progress = ~halved_at_check & (best_at_check >= best_loss)
            halve = oscillating | no_progress
            halved_at_check, best_at_check = halve, best_loss.clone()
            eta = torch.where(halve, eta / 2, eta)
            x_adv = torch.where(halve.view(shape), best_x, x_adv)
            grad = torch.where(halve.view(shape), best_grad, grad)
            interval = next(intervals, interval)
            if first_success and done.any():
                result[live[done]] = found[done]
                keep = ~done
                live, x, y = live[keep], x[keep], y[keep]
                target = target[keep] if target is not None else None
                x_adv, x_old, grad, loss, found, done = x_adv[keep], x_old[keep], grad[keep], loss[keep], found[keep], done[keep]
                best_loss, best_x, best_grad, eta = best_loss[keep], best_x[keep], best_grad[keep], eta[keep]
                history, best_at_check, halved_at_check = history[:, keep], best_at_check[keep], halved_at_check[keep]
                if live.numel() == 0:
                    break
        if on_step is not None:
            on_step()
    result[live] = torch.where(done.view(shape), found, best_x)
    if quantize_result:
        x, y = x_all, y_all
        result = keep_successes(model, x, y, targeted, quantize(x, result, eps, norm), result, eps, norm)
    return result.detach()
