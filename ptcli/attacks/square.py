"""The Square attack (Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient
black-box adversarial attack via random search", ECCV 2020), L-inf and L2, as AutoAttack runs
it: random square-shaped changes at the edge of the budget, kept when they lower the margin
of the true class; the squares shrink on the published schedule. It only ever reads the
model's outputs (everything runs under no_grad), so it also measures models whose gradients
are useless or absent. Each sample stops querying once it is fooled; the queries it spent
(the first, unperturbed-start query included) are reported.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

#: The square's share of the image at the start (AutoAttack's p_init).
P_INIT = 0.8


def square_fraction(query: int, queries: int = 10000) -> float:
    """The share of the image one square covers after ``query`` queries: p_init halved at
    10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 (the published schedule, not rescaled
    to the budget, as in AutoAttack)."""
    halvings = sum(query > edge for edge in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000))
    return P_INIT / 2 ** halvings


def margin(logits, y, targeted: bool):
    """Above 0 while the attack has not succeeded: the true logit over the best other one
    (targeted: the best other over the target's)."""
    own = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return others - own if targeted else own - others


def _window_profile(rows: int, cols: int, device):
    """Square's L2 building block: nested rectangles whose weight falls with 1/k^2, unit norm."""
    import torch

    profile = torch.zeros(rows, cols, device=device)
    top, left = rows // 2, cols // 2
    for k in range(max(top + 1, left + 1)):
        profile[max(top - k, 0):min(top - k + 2 * k + 1, rows), max(left - k, 0):min(left - k + 2 * k + 1, cols)] += 1.0 / (k + 1) ** 2
    return profile / profile.pow(2).sum().sqrt()


def _l2_square(size: int, generator, device):
    """A size x size L2 perturbation: the profile above on one half, its negative on the other,
    transposed at random."""
    import torch

    block = torch.zeros(size, size, device=device)
    block[:size // 2] = _window_profile(size // 2, size, device)
    block[size // 2:] = -_window_profile(size - size // 2, size, device)
    block = block / block.pow(2).sum().sqrt()
    if torch.rand(1, generator=generator).item() > 0.5:
        block = block.t()
    return block


def square(model, x, y, *, eps: float, norm: str = "linf", queries: int = 5000, targeted: bool = False,
           quantize_result: bool = False, seed: int = 0, steps: int | None = None,
           on_step: Callable[[], None] | None = None, record: dict | None = None, **_):
    """Adversarial ``x`` within ``eps`` after at most ``queries`` model calls per sample
    (``steps``, when given, is the same budget). ``record["queries"]`` gets the queries each
    sample used: the number of calls until it was fooled, or the whole budget."""
    import torch

    from .toolkit import NORMS, keep_successes, quantize

    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}")
    budget = steps if steps is not None else queries
    if eps <= 0 or budget < 1:
        if record is not None:
            record["queries"] = torch.zeros(x.shape[0], dtype=torch.long)
        return x.clone()
    generator = torch.Generator().manual_seed(seed)
    draws = random.Random(seed)  # the per-query positions and signs: Python's generator is faster for single numbers
    device = x.device
    batch, channels, height, width = x.shape
    features = channels * height * width

    def signs(*shape):
        return (torch.randint(0, 2, shape, generator=generator) * 2 - 1).to(device=device, dtype=x.dtype)

    def randint(high: int) -> int:
        return draws.randint(0, high)

    def l2_normalised(t):
        return t / (t.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-12)

    with torch.no_grad():
        if norm == "linf":
            best = (x + eps * signs(batch, channels, 1, width)).clamp(0, 1)  # vertical stripes
        else:
            start, size = torch.zeros_like(x), max(height // 5, 1)
            offset = (height - size * 5) // 2
            for row in range(offset, offset + size * (height // size), size):
                for col in range(offset, offset + size * (width // size), size):
                    if row + size > height or col + size > width:
                        continue
                    start[:, :, row:row + size, col:col + size] += _l2_square(size, generator, device) * signs(batch, channels, 1, 1)
            best = (x + l2_normalised(start) * eps).clamp(0, 1)
        best_margin = margin(model(best), y, targeted)
        best_loss = best_margin.clone()
        used = torch.ones(batch, dtype=torch.long, device=device)
        # The samples still to fool, kept compact and rebuilt only when one is fooled: gathering
        # them on every query cost more than the model here.
        active = (best_margin > 0).nonzero().flatten()
        clean, current, labels = x[active], best[active], y[active]
        current_margin, current_loss = best_margin[active], best_loss[active]
        for query in range(budget - 1):
            if active.numel() == 0:
                break
            p = square_fraction(query)
            if norm == "linf":
                size = min(max(int(round(math.sqrt(p * features / channels))), 1), height, width)
                row, col = randint(height - size), randint(width - size)
                window = (slice(None), slice(None), slice(row, row + size), slice(col, col + size))
                stripe = torch.tensor([draws.choice((-2 * eps, 2 * eps)) for _ in range(channels)], dtype=x.dtype, device=device)
                candidate = current.clone()
                base = clean[window]
                candidate[window] = torch.min(torch.max(current[window] + stripe.view(channels, 1, 1), base - eps), base + eps).clamp(0, 1)
            else:
                candidate = _l2_step(clean, current, eps, p, features, generator, signs, randint)
            new_margin = margin(model(candidate), labels, targeted)
            lower = new_margin < current_loss
            improved = lower | (new_margin <= 0)
            current_loss = torch.where(lower, new_margin, current_loss)
            current_margin = torch.where(improved, new_margin, current_margin)
            current = torch.where(improved.view(-1, 1, 1, 1), candidate, current)
            used[active] += 1
            done = current_margin <= 0
            if done.any():
                best[active], best_margin[active] = current, current_margin
                keep = ~done
                active, clean, current, labels = active[keep], clean[keep], current[keep], labels[keep]
                current_margin, current_loss = current_margin[keep], current_loss[keep]
            if on_step is not None:
                on_step()
        best[active] = current
    if record is not None:
        record["queries"] = used.cpu()
    result = best
    if quantize_result:
        result = keep_successes(model, x, y, targeted, quantize(x, result, eps, norm), result, eps, norm)
    return result.detach()


def _l2_step(clean, current, eps, p, features, generator, signs, randint):
    """One L2 proposal: a new square's perturbation rebuilt at one window, a second window
    emptied, with the budget's unspent mass moved into the first (the published update)."""
    import torch

    batch, channels, height, width = clean.shape
    size = max(int(round(math.sqrt(p * features / channels))), 3)
    size = min(size + (size % 2 == 0), height, width)
    delta = current - clean
    row, col = randint(height - size), randint(width - size)
    row2, col2 = randint(height - size), randint(width - size)
    window = (slice(None), slice(None), slice(row, row + size), slice(col, col + size))
    window2 = (slice(None), slice(None), slice(row2, row2 + size), slice(col2, col2 + size))
    mask = torch.zeros_like(clean)
    mask[window] = 1
    mask[window2] = 1
    norm_window = delta[window].pow(2).sum(dim=(-2, -1), keepdim=True).sqrt()
    norm_image = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    norm_windows = (delta * mask).pow(2).sum(dim=(-2, -1), keepdim=True).sqrt()
    fresh = _l2_square(size, generator, clean.device).view(1, 1, size, size) * signs(batch, channels, 1, 1)
    fresh = fresh + delta[window] / (norm_window + 1e-12)
    spare = (eps ** 2 - norm_image ** 2).clamp(min=0) / channels + norm_windows ** 2
    fresh = fresh / (fresh.pow(2).sum(dim=(-2, -1), keepdim=True).sqrt() + 1e-12) * spare.sqrt()
    delta = delta.clone()
    delta[window2] = 0
    delta[window] = fresh
    return (clean + delta / (delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-12) * eps).clamp(0, 1)
