"""Gradient checkpointing for models built of a sequence of blocks (torch.utils.checkpoint):
each block's activations are recomputed in the backward pass rather than kept."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class CheckpointedSequential(nn.Sequential):
    """nn.Sequential whose blocks are checkpointed while training with gradients on; its
    state-dict keys are the Sequential's (``body.0...``), so checkpoints load either way."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return super().forward(x)
        for block in self:
            x = checkpoint(block, x, use_reentrant=False)
        return x


def checkpoint_blocks(parent: nn.Module, name: str) -> None:
    """Replace ``parent.<name>`` (an nn.Sequential) by its checkpointed twin, in place."""
    blocks = getattr(parent, name)
    setattr(parent, name, CheckpointedSequential(*blocks))


def enable_hf_checkpointing(model) -> None:
    """transformers' own gradient checkpointing, or a one-line refusal for a model without it."""
    from ptcli.errors import UsageError

    if not getattr(model, "supports_gradient_checkpointing", False):
        raise UsageError(f"trainer.grad_checkpointing: {type(model).__name__} does not support gradient checkpointing")
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5's name; the old one warns
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
