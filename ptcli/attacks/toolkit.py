"""The attacks' shared toolkit, at the bottom of ptcli.attacks (every attack imports it, it
imports no attack): norms and projection onto the eps ball, the losses (cross-entropy, DLR),
success, 8-bit quantization inside the budget (``quantize``, ``keep_successes``), random
starts, --eps parsing and BPDA's ``straight_through``."""

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


def keep_successes(model, x, y, targeted, rounded, unrounded, eps, norm):
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


#: The name the attacks used before the toolkit had a module of its own.
_keep_successes = keep_successes
