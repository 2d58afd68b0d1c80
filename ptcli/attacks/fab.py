"""FAB-T, the targeted Fast Adaptive Boundary attack (Croce & Hein, "Minimally distorted
adversarial examples with a fast adaptive boundary attack", ICML 2020), L-inf and L2, as
AutoAttack runs it: for each of the ``targets`` likeliest other classes in turn, on the
samples not yet fooled, ``steps`` steps that project onto the linearised boundary between the
true class and the target (from the current point and from the original, mixed by how far
each is), overshooting by ``ETA`` and stepping back by ``BETA`` once over it. It looks for
the smallest change; a change larger than ``eps`` does not count.

The projection onto the linearised boundary inside the pixel box is exact (box_projection).
"""

from __future__ import annotations

from collections.abc import Callable

#: The published constants: overshoot, step back after a success, the most weight of the original.
ETA, BETA, ALPHA_MAX = 1.05, 0.9, 0.1


def _norm(t, norm: str):
    flat = t.flatten(1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)


def box_projection(point, w, needed, norm: str):
    """The smallest change d (in ``norm``) with w.d = needed and point + d in [0, 1]: per
    sample, flat (B, D). Where the box makes it impossible, the change that gets closest.

    With v = w signed so that v.d must reach |needed|, the answer is clip(s v, box) for L2 and
    clip(s sign(v), box) for L-inf, for the smallest scale s that reaches it. v.d is piecewise
    linear in s, bending where a coordinate meets the box, so s is exact from the sorted bends."""
    import torch

    low, high = -point, 1 - point
    v = w * torch.sign(needed).view(-1, 1)
    target = needed.abs()
    bound = torch.where(v > 0, high, low)  # where each coordinate stops
    weight = v * v if norm == "l2" else v.abs()  # its share of v.d while it moves
    gain = v * bound  # its share once stopped
    moves = v != 0
    bend = torch.where(moves, bound / torch.where(moves, v, 1.0) if norm == "l2" else bound.abs(), torch.inf)
    bend, order = bend.sort(dim=1)
    stopped = gain.gather(1, order).cumsum(dim=1)
    moving = weight.sum(dim=1, keepdim=True) - weight.gather(1, order).cumsum(dim=1)
    reached = torch.where(torch.isinf(bend), torch.inf, stopped + bend * moving)
    k = (reached < target.view(-1, 1)).sum(dim=1, keepdim=True)  # bends passed before the target is met
    before = (k - 1).clamp(min=0)
    stopped_before = torch.where(k > 0, stopped.gather(1, before), 0.0)
    moving_before = torch.where(k > 0, moving.gather(1, before), weight.sum(dim=1, keepdim=True))
    scale = torch.where(moving_before > 0, (target.view(-1, 1) - stopped_before) / moving_before.clamp(min=1e-30), torch.inf)
    scale = scale.clamp(max=1e6)  # unreachable: every coordinate at its bound
    step = scale * (v if norm == "l2" else v.sign())
    return torch.where(moves, step, 0.0).clamp(low, high)


def fab_targeted(model, x, y, *, eps: float, norm: str = "linf", steps: int = 100, targets: int = 9,
                 targeted: bool = False, quantize_result: bool = False, seed: int = 0,
                 on_step: Callable[[], None] | None = None, **_):
    """FAB-T against ``model``: ``targets`` target classes (the likeliest others on the clean
    input), ``steps`` steps each, for the samples still classified correctly."""
    import torch

    from .toolkit import NORMS, keep_successes, quantize

    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}")
    if targeted:
        raise ValueError("FAB-T picks its own targets; it takes no --target")
    if eps <= 0 or steps < 1:
        return x.clone()
    result = x.clone()
    with torch.no_grad():
        logits = model(x)
        robust = logits.argmax(dim=1) == y
        ranked = logits.argsort(dim=1, descending=True)
    for rank in range(1, min(targets, logits.shape[1] - 1) + 1):
        todo = robust.nonzero().flatten()
        if todo.numel() == 0:
            break
        found, size = _fab_run(model, x[todo], y[todo], ranked[todo, rank], eps, norm, steps, on_step)
        fooled = size <= eps + 1e-9
        result[todo[fooled]] = found[fooled]
        robust[todo[fooled]] = False
    if quantize_result:
        result = keep_successes(model, x, y, False, quantize(x, result, eps, norm), result, eps, norm)
    return result.detach()


def _fab_run(model, x, y, target, eps, norm, steps, on_step):
    """One FAB-T run towards ``target``: (the smallest adversarial point found, its size; inf
    where none was)."""
    import torch

    batch = x.shape[0]
    shape = (-1,) + (1,) * (x.dim() - 1)
    flat_x = x.flatten(1)
    best = x.clone()
    best_size = torch.full((batch,), float("inf"), device=x.device)
    current = x.clone()
    for _ in range(steps):
        point = current.detach().requires_grad_(True)
        logits = model(point)
        # f > 0 once the target beats the true class; its linearisation is the boundary
        f = logits.gather(1, target[:, None]).squeeze(1) - logits.gather(1, y[:, None]).squeeze(1)
        grad, = torch.autograd.grad(f.sum(), point)
        f, w = f.detach(), grad.detach().flatten(1)
        flat_point = current.flatten(1)
        # the plane w.z = w.point - f, reached from the current point and from the original
        plane = (w * flat_point).sum(dim=1) - f
        both = box_projection(torch.cat([flat_point, flat_x]), torch.cat([w, w]),
                              torch.cat([plane - (w * flat_point).sum(dim=1), plane - (w * flat_x).sum(dim=1)]), norm)
        from_point, from_original = both[:batch].view_as(x), both[batch:].view_as(x)
        sizes = _norm(both, norm).clamp(min=1e-8)
        a1, a2 = sizes[:batch], sizes[batch:]
        alpha = (a1 / (a1 + a2)).clamp(0, ALPHA_MAX).view(shape)
        current = ((current + ETA * from_point) * (1 - alpha) + (x + ETA * from_original) * alpha).clamp(0, 1)
        with torch.no_grad():
            fooled = model(current).argmax(dim=1) != y
        size = _norm(current - x, norm)
        smaller = fooled & (size < best_size)
        best[smaller], best_size[smaller] = current[smaller], size[smaller]
        current = torch.where(fooled.view(shape), x + (current - x) * BETA, current)
        if on_step is not None:
            on_step()
    return best, best_size
