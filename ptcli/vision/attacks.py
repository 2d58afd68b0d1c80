"""Adversarial examples (book ch. 9), small and in plain PyTorch: FGSM, PGD (L-inf or L2, with
a random start) and APGD-CE (Croce & Hein, 2020), the step-size-free attack that "AutoAttack"
starts with, as the strong one.

Every attack takes ``model``: a module from pixel images in [0, 1] (B, 3, H, W) to logits, with
any resizing and normalisation inside it, so that a perturbation bounded by ``eps`` is bounded
in the pixels a file holds. It returns adversarial pixels within ``eps`` of ``x`` and in [0, 1].
``quantize`` rounds the result to 8-bit values (what a PNG stores) inside the budget, so that
saving it does not undo the attack. Each sample keeps the latest point that succeeded (later
ones push the loss further), so more steps never lose a success.
"""

from __future__ import annotations

from collections.abc import Callable

NORMS = ("linf", "l2")


def _flat_norm(t):
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def project(delta, eps: float, norm: str):
    """``delta`` moved into the ``eps`` ball of ``norm``."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    return delta * (eps / _flat_norm(delta).clamp(min=1e-12)).clamp(max=1.0)


def _ascent(grad, norm: str):
    if norm == "linf":
        return grad.sign()
    return grad / _flat_norm(grad).clamp(min=1e-12)


def _objective(logits, y, targeted: bool):
    """What each step increases: the loss of the true label, or minus that of the target."""
    import torch.nn.functional as F

    loss = F.cross_entropy(logits, y, reduction="none")
    return -loss if targeted else loss


def dlr(logits, y):
    """Croce & Hein's difference of logits ratio: the true logit's margin over the best other,
    divided by the spread of the top three, so that rescaling the logits changes nothing."""
    ranked = logits.sort(dim=1).values
    true = logits.gather(1, y[:, None]).squeeze(1)
    top_is_true = (logits.argmax(dim=1) == y).float()
    best_other = ranked[:, -2] * top_is_true + ranked[:, -1] * (1 - top_is_true)
    return -(true - best_other) / (ranked[:, -1] - ranked[:, -3] + 1e-12)


def dlr_targeted(logits, y, target):
    """DLR towards ``target``: the true logit's margin over the target's, scaled by the spread
    between the top logit and the mean of the third and fourth (APGD-T's loss)."""
    ranked = logits.sort(dim=1).values
    true, wanted = logits.gather(1, y[:, None]).squeeze(1), logits.gather(1, target[:, None]).squeeze(1)
    return -(true - wanted) / (ranked[:, -1] - 0.5 * (ranked[:, -3] + ranked[:, -4]) + 1e-12)


def _loss_and_grad(model, point, loss_of, draws: int = 1):
    """Each sample's loss and its gradient at ``point``, averaged over ``draws`` forward passes
    (EOT: expectation over transformation, for a model or filter that is random), and the
    last draw's logits."""
    import torch

    total_loss, total_grad = 0.0, 0.0
    for _ in range(draws):
        point = point.detach().requires_grad_(True)
        logits = model(point)
        loss = loss_of(logits)
        grad, = torch.autograd.grad(loss.sum(), point)
        total_loss, total_grad = total_loss + loss.detach(), total_grad + grad.detach()
    return total_loss / draws, total_grad / draws, logits.detach()


def succeeded(logits, y, targeted: bool):
    predicted = logits.argmax(dim=1)
    return predicted == y if targeted else predicted != y


def quantize(x, x_adv, eps: float, norm: str):
    """``x_adv`` rounded to the 8-bit grid, still within ``eps`` of ``x`` (itself on the grid,
    as pixels read from a file are)."""
    import torch

    if norm == "linf":  # in integer levels, so that every value is exactly k / 255
        levels, budget = torch.round(x * 255), float(int(eps * 255 + 1e-6))
        return (levels + (torch.round(x_adv * 255) - levels).clamp(-budget, budget)).clamp(0, 255) / 255
    # L2: each pixel's change truncated towards zero, so that no change grows and the norm stays within eps
    levels = torch.round(x * 255)
    return (levels + torch.trunc((x_adv - x) * 255)).clamp(0, 255) / 255


def _random_start(x, eps: float, norm: str, generator):
    import torch

    if norm == "linf":
        noise = torch.rand(x.shape, generator=generator, device="cpu").to(x) * 2 - 1
        return noise * eps
    direction = torch.randn(x.shape, generator=generator, device="cpu").to(x)
    radius = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), generator=generator, device="cpu").to(x)
    return direction / _flat_norm(direction).clamp(min=1e-12) * eps * radius


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
        result = _keep_successes(model, x, y, targeted, quantize(x, result, eps, norm), result, eps, norm)
    return result.detach()


def _keep_successes(model, x, y, targeted, rounded, unrounded, eps, norm):
    """Rounding can undo a success found at the budget's edge: where it does, try the point
    moved a little inside the budget, rounded again, and keep whichever succeeds."""
    import torch

    with torch.no_grad():
        ok = succeeded(model(rounded), y, targeted)
        if ok.all():
            return rounded
        alternative = quantize(x, x + project(unrounded - x, eps, norm) * 0.999, eps, norm)
        alt_ok = succeeded(model(alternative), y, targeted)
    use = (~ok & alt_ok).view(-1, *([1] * (x.dim() - 1)))
    return torch.where(use, alternative, rounded)


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
        result = _keep_successes(model, x, y, targeted, quantize(x, result, eps, norm), result, eps, norm)
    return result.detach()


def deepfool(model, x, y, **kwargs):
    """DeepFool, minimal L2 (ptcli.vision.minimal)."""
    from .minimal import deepfool as run

    return run(model, x, y, **kwargs)


def cw(model, x, y, **kwargs):
    """Carlini-Wagner L2 with a binary search over c (ptcli.vision.minimal)."""
    from .minimal import carlini_wagner

    return carlini_wagner(model, x, y, **kwargs)


def square(model, x, y, **kwargs):
    """The Square attack, black-box: outputs only (ptcli.vision.square)."""
    from .square import square as run

    return run(model, x, y, **kwargs)


def fab(model, x, y, **kwargs):
    """FAB-T, minimal change towards the likeliest other classes (ptcli.vision.fab)."""
    from .fab import fab_targeted

    return fab_targeted(model, x, y, **kwargs)


def autoattack(model, x, y, **kwargs):
    """AutoAttack's standard or rand set (ptcli.vision.autoattack)."""
    from .autoattack import autoattack as run

    return run(model, x, y, **kwargs)


ATTACKS = {"fgsm": fgsm, "pgd": pgd, "apgd": apgd, "deepfool": deepfool, "cw": cw, "square": square, "fab": fab,
           "autoattack": autoattack}
#: Attacks that look for the smallest change, in L2 only.
L2_ONLY = ("deepfool", "cw")
#: Attacks that use no gradient.
BLACK_BOX = ("square",)


def parse_eps(text: str) -> float:
    """``4/255`` or ``0.0157``."""
    try:
        if "/" in text:
            top, bottom = text.split("/", 1)
            value = float(top) / float(bottom)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        from ptcli.errors import UsageError

        raise UsageError(f"--eps must be a number or a fraction such as 4/255 (got {text!r})") from None
    if value < 0:
        from ptcli.errors import UsageError

        raise UsageError(f"--eps must be at least 0 (got {text})")
    return value


def straight_through(transform: Callable):
    """BPDA (Athalye et al., 2018): ``transform`` forward, the identity backward, so that an
    attack sees through a filter that has no useful gradient (JPEG, rounding, a median)."""

    def through(x):
        return x + (transform(x) - x).detach()

    return through
