"""``trainer.ema``: an exponential moving average of each trained model's weights (and
buffers), updated after every optimizer step, for any recipe. Validation, the best and last
checkpoints and everything a run writes use the averaged weights; the resumable state keeps
both, so that a resumed run continues the same average to the last bit. Built on torch's
``AveragedModel``, as super-resolve's own generator average is.

The decay warms up (as timm's ModelEmaV3 does): after n updates it is
``min(decay, (1 + n) / (warmup + n))``, so that early weights, far from trained, fade fast.
"""

from __future__ import annotations

import contextlib
from typing import Any


def _updater(decay: float, warmup: int):
    import torch

    def update(averaged: list, current: list, num_averaged) -> None:
        if averaged and not averaged[0].is_floating_point():  # counters (BatchNorm's): the latest
            for mine, theirs in zip(averaged, current):
                mine.copy_(theirs)
            return
        n = int(num_averaged)
        rate = decay if warmup <= 0 else min(decay, (1 + n) / (warmup + n))
        torch._foreach_lerp_(averaged, current, 1 - rate)

    return update


class Averages:
    """The averaged copies of the models that ``config`` (trainer.ema) names, by model name."""

    def __init__(self, config, models: dict[str, Any]) -> None:
        from torch.optim.swa_utils import AveragedModel

        self.enabled = config.decay > 0
        self.averaged: dict[str, Any] = {}
        if not self.enabled:
            return
        for name, model in models.items():
            averaged = AveragedModel(model, multi_avg_fn=_updater(config.decay, config.warmup), use_buffers=True)
            self.averaged[name] = averaged.requires_grad_(False).eval()

    def update(self, name: str, model) -> None:
        averaged = self.averaged.get(name)
        if averaged is not None:
            averaged.update_parameters(model)

    def modules(self) -> dict[str, Any]:
        """The averaged networks themselves (what a checkpoint saves), by model name."""
        return {name: averaged.module for name, averaged in self.averaged.items()}

    def state_dict(self) -> dict:
        return {name: averaged.state_dict() for name, averaged in self.averaged.items()}

    def load_state_dict(self, state: dict | None) -> None:
        from ptcli.errors import UsageError

        if not self.averaged:
            return
        if not state or set(state) != set(self.averaged):
            raise UsageError("trainer.ema is on, but the run being resumed kept no average of its weights "
                             "(it was started without trainer.ema); resume it as it was, or start a new run")
        for name, averaged in self.averaged.items():
            averaged.load_state_dict(state[name])

    @contextlib.contextmanager
    def in_use(self, context):
        """``context.models`` (what the steps see) with the averaged networks in place of the
        trained ones, for as long as the block runs."""
        if not self.averaged:
            yield
            return
        live = context.models
        context.models = {**live, **self.modules()}
        try:
            yield
        finally:
            context.models = live
