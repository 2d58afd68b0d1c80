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
        on_step: Callable[[], None] | None = None):
    """Projected gradient descent (Madry et al.): ``steps`` signed (L-inf) or normalised (L2)
    gradient steps of ``step_size`` (default 2.5 * eps / steps), each projected back into the
    ball. ``random_start``: begin at a random point of the ball (seeded by ``seed``)."""
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
        point = (x + delta).requires_grad_(True)
        logits = model(point)
        fooled = succeeded(logits.detach(), y, targeted)
        best[fooled] = point.detach()[fooled]  # copies only those rows
        done |= fooled
        grad, = torch.autograd.grad(_objective(logits, y, targeted).sum(), point)
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


def fgsm(model, x, y, *, eps: float, norm: str = "linf", targeted: bool = False, quantize_result: bool = False, **_):
    """The fast gradient sign method (Goodfellow et al.): one step of size eps, from x itself."""
    return pgd(model, x, y, eps=eps, steps=1, step_size=eps, norm=norm, random_start=False, targeted=targeted,
               quantize_result=quantize_result)


def apgd(model, x, y, *, eps: float, steps: int = 100, norm: str = "linf", targeted: bool = False,
         quantize_result: bool = False, seed: int = 0, rho: float = 0.75, on_step: Callable[[], None] | None = None, **_):
    """APGD-CE (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
    diverse parameter-free attacks", 2020): PGD with momentum whose step size starts at 2 eps
    and halves, per sample, at checkpoints where the loss stopped rising, restarting from the
    best point found. No step size to tune, and hard to fool with a badly chosen one."""
    import torch

    if eps <= 0 or steps < 1:
        return x.clone()
    shape = (-1,) + (1,) * (x.dim() - 1)
    checkpoints, p, previous = [0], 0.22, 0.0
    while (point := int(round(p * steps))) < steps:
        if point > checkpoints[-1]:
            checkpoints.append(point)
        p, previous = p + max(p - previous - 0.03, 0.06), p
    generator = torch.Generator().manual_seed(seed)
    eta = torch.full((x.shape[0],), 2.0 * eps, device=x.device)

    def loss_and_grad(point):
        point = point.detach().requires_grad_(True)
        logits = model(point)
        loss = _objective(logits, y, targeted)
        grad, = torch.autograd.grad(loss.sum(), point)
        return loss.detach(), grad.detach(), logits.detach()

    def step_from(point, grad):
        moved = point + eta.view(shape) * _ascent(grad, norm)
        return (x + project(moved - x, eps, norm)).clamp(0, 1)

    x_k = (x + _random_start(x, eps, norm, generator) * 0.5).clamp(0, 1)
    loss, grad, logits = loss_and_grad(x_k)
    best_loss, best_x = loss.clone(), x_k.clone()
    done = succeeded(logits, y, targeted)
    found = torch.where(done.view(shape), x_k, x)
    x_prev = x_k
    x_k = step_from(x_k, grad)
    increases = torch.zeros_like(eta)
    eta_at_check, best_at_check = eta.clone(), best_loss.clone()
    last_check = 0
    for k in range(1, steps):
        loss, grad, logits = loss_and_grad(x_k)
        fooled = succeeded(logits, y, targeted)
        found[fooled] = x_k[fooled]
        done |= fooled
        improved = loss > best_loss
        increases += improved.float()
        best_x[improved], best_loss[improved] = x_k[improved], loss[improved]
        if k in checkpoints:
            span = k - last_check
            stalled = (increases < rho * span) | ((eta_at_check == eta) & (best_at_check == best_loss))
            eta = torch.where(stalled, eta / 2, eta)
            x_k = torch.where(stalled.view(shape), best_x, x_k)
            if stalled.any():
                loss, grad, _ = loss_and_grad(x_k)
            increases.zero_()
            eta_at_check, best_at_check, last_check = eta.clone(), best_loss.clone(), k
        z = step_from(x_k, grad)
        alpha = 0.75
        moved = x_k + alpha * (z - x_k) + (1 - alpha) * (x_k - x_prev)
        x_prev, x_k = x_k, (x + project(moved - x, eps, norm)).clamp(0, 1)
        if on_step is not None:
            on_step()
    result = torch.where(done.view(shape), found, best_x)
    if quantize_result:
        result = _keep_successes(model, x, y, targeted, quantize(x, result, eps, norm), result, eps, norm)
    return result.detach()


ATTACKS = {"fgsm": fgsm, "pgd": pgd, "apgd": apgd}


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
