"""Randomized smoothing (Cohen, Rosenfeld & Kolter, "Certified adversarial robustness via
randomized smoothing", ICML 2019): the smoothed classifier answers the class the base model
gives most often under Gaussian noise of ``sigma``; CERTIFY bounds, with confidence 1 - alpha,
the probability of that class from below (Clopper-Pearson) and turns it into an L2 radius
within which no change can alter the smoothed answer: sigma * Phi^-1(p_lower).

The noise is drawn from one generator seeded with ``seed`` for every input, in chunks of
``batch_size`` (first the n0 selection draws, then the n estimation draws), so a run can be
repeated exactly. The model takes the pixels it classifies, in [0, 1]; noise is not clipped.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Certificate:
    #: The smoothed classifier's class, or None: it abstains.
    label: int | None
    #: The certified L2 radius (0 when it abstains).
    radius: float
    #: Clopper-Pearson lower bound of the class's probability under noise.
    p_lower: float
    #: How often the class came out of the n estimation draws.
    count: int


def class_counts(model, x, *, sigma: float, draws: int, batch_size: int, generator, classes: int):
    """How often each class is the base model's answer on ``draws`` noisy copies of ``x`` (C, H, W)."""
    import torch

    counts = torch.zeros(classes, dtype=torch.long)
    left = draws
    with torch.no_grad():
        while left > 0:
            chunk = min(batch_size, left)
            noise = torch.randn((chunk, *x.shape), generator=generator).to(x)
            answers = model(x.unsqueeze(0) + sigma * noise).argmax(dim=1).cpu()
            counts += torch.bincount(answers, minlength=classes)
            left -= chunk
    return counts


def lower_confidence_bound(successes: int, trials: int, alpha: float) -> float:
    """The one-sided (1 - alpha) Clopper-Pearson lower bound of a binomial proportion."""
    from scipy.stats import beta

    if successes == 0:
        return 0.0
    return float(beta.ppf(alpha, successes, trials - successes + 1))


def certify(model, x, *, sigma: float, n0: int = 100, n: int = 1000, alpha: float = 0.001, batch_size: int = 200,
            seed: int = 0, classes: int | None = None) -> Certificate:
    """CERTIFY for one input: the likeliest class from n0 draws, its probability bounded from n
    others, abstaining when the bound is below one half."""
    import torch
    from scipy.stats import norm

    if classes is None:
        with torch.no_grad():
            classes = model(x.unsqueeze(0)).shape[1]
    generator = torch.Generator().manual_seed(seed)
    selection = class_counts(model, x, sigma=sigma, draws=n0, batch_size=batch_size, generator=generator, classes=classes)
    top = int(selection.argmax())
    estimation = class_counts(model, x, sigma=sigma, draws=n, batch_size=batch_size, generator=generator, classes=classes)
    count = int(estimation[top])
    p_lower = lower_confidence_bound(count, n, alpha)
    if p_lower < 0.5:
        return Certificate(None, 0.0, p_lower, count)
    return Certificate(top, float(sigma * norm.ppf(p_lower)), p_lower, count)


def certified_accuracy(certificates: list[Certificate], labels: list[int], radii) -> dict[float, float]:
    """The share of inputs whose smoothed class is right with a radius of at least r, per r."""
    total = max(len(labels), 1)
    return {r: sum(c.label == y and c.radius >= r for c, y in zip(certificates, labels)) / total for r in radii}
