"""The learning-rate range test (book ch. 4, after Smith 2015): raise the learning rate
exponentially batch by batch, record the smoothed loss, stop once it passes 4x the best, and
suggest the rate where the loss falls fastest. The models and optimizer are restored
afterwards, so the training that follows starts from the same weights."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

from ptcli.errors import UsageError


@dataclass
class LRFinderResult:
    lrs: list[float]
    losses: list[float]
    suggestion: float | None


def smoothed(values: list[float], beta: float) -> list[float]:
    """Exponential moving average with bias correction (as in the book)."""
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = beta * average + (1 - beta) * value
        out.append(average / (1 - beta**i))
    return out


def steepest_descent(lrs: list[float], losses: list[float], skip_start: int = 3, skip_end: int = 2) -> float | None:
    """The learning rate where d(loss)/d(log lr) is most negative, away from the noisy ends."""
    import numpy as np

    if len(lrs) < skip_start + skip_end + 3:
        skip_start, skip_end = 0, 0
    if len(lrs) < 3:
        return None
    x = np.log10(np.asarray(lrs[skip_start: len(lrs) - skip_end]))
    y = np.asarray(losses[skip_start: len(losses) - skip_end])
    if len(x) < 3:
        return None
    return float(10 ** x[int(np.argmin(np.gradient(y, x)))])


def lr_range_test(trainer, start_lr: float = 1e-7, end_lr: float = 10.0, num_iter: int = 100,
                  beta: float = 0.98, diverge: float = 4.0, on_step=None) -> LRFinderResult:
    """Run the test on a prepared Trainer; its models and optimizer are left as they were.
    ``on_step(lr, smoothed_loss)`` is called after each batch (for a progress bar)."""
    if len(trainer.optimizers) != 1:
        raise UsageError("lr-find works on recipes with one optimizer; this one has " + ", ".join(trainer.optimizers))
    optimizer = next(iter(trainer.optimizers.values()))
    base = trainer.cfg.lr
    ratios = [group["lr"] / base for group in optimizer.param_groups]  # keeps differential rates
    saved_models = {name: copy.deepcopy(m.state_dict()) for name, m in trainer.models.items()}
    saved_optimizer = copy.deepcopy(optimizer.optimizer.state_dict())
    factor = (end_lr / start_lr) ** (1 / max(num_iter - 1, 1))
    lrs, raw, curve = [], [], []
    best = math.inf
    for model in trainer.models.values():
        model.train()
    try:
        batches = _cycle(trainer.train_loader)
        for i in range(num_iter):
            lr = start_lr * factor**i
            for group, ratio in zip(optimizer.param_groups, ratios):
                group["lr"] = lr * ratio
            losses = trainer.task.training_step(next(batches), trainer.ctx)
            loss = float(losses["loss"] if "loss" in losses else next(iter(losses.values())))
            if not math.isfinite(loss):
                break
            raw.append(loss)
            lrs.append(lr)
            curve = smoothed(raw, beta)
            best = min(best, curve[-1])
            if on_step is not None:
                on_step(lr, curve[-1])
            if curve[-1] > diverge * best:
                break
    finally:
        for name, model in trainer.models.items():
            model.load_state_dict(saved_models[name])
        optimizer.optimizer.load_state_dict(saved_optimizer)
    return LRFinderResult(lrs=lrs, losses=curve, suggestion=steepest_descent(lrs, curve))


def _cycle(loader):
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def plot(result: LRFinderResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ptcli.files import atomic_write

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(result.lrs, result.losses)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    if result.suggestion is not None:
        ax.axvline(result.suggestion, color="tab:red", linestyle="--", label=f"suggested {result.suggestion:.2e}")
        ax.legend()
    ax.set_title("Learning-rate range test")
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return path
