"""TRADES (Zhang et al., "Theoretically principled trade-off between robustness and accuracy",
ICML 2019): train on the clean loss plus beta times the KL divergence between the prediction on
an image and on its worst neighbour within eps, so that the model is smooth around the data
rather than right on one attack's examples. The model takes pixels in [0, 1]."""

from __future__ import annotations


def worst_neighbour(model, x, *, eps: float, steps: int = 10, step_size: float | None = None, seed: int = 0):
    """The point within L-inf ``eps`` of ``x`` whose prediction diverges most (KL) from x's:
    ``steps`` signed gradient steps from x plus noise of 0.001 (the paper's start)."""
    import torch
    import torch.nn.functional as F

    if eps <= 0:
        return x.clone()
    step = step_size if step_size is not None else 2.5 * eps / steps
    with torch.no_grad():
        clean = F.softmax(model(x), dim=1)
    generator = torch.Generator().manual_seed(seed)
    point = x + 0.001 * torch.randn(x.shape, generator=generator).to(x)
    for _ in range(steps):
        point = point.detach().requires_grad_(True)
        divergence = F.kl_div(F.log_softmax(model(point), dim=1), clean, reduction="sum")
        grad, = torch.autograd.grad(divergence, point)
        point = torch.min(torch.max(point.detach() + step * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return point.detach()


def trades_loss(clean_logits, neighbour_logits, targets, beta: float, criterion):
    """criterion(clean) + beta * KL(p(x) || p(x')), the divergence averaged over the batch."""
    import torch.nn.functional as F

    divergence = F.kl_div(F.log_softmax(neighbour_logits.float(), dim=1), F.softmax(clean_logits.float(), dim=1),
                          reduction="batchmean")
    return criterion(clean_logits, targets) + beta * divergence
