"""Optimizers with per-group learning rates, schedulers, and freezing of named groups."""

from __future__ import annotations

from collections.abc import Mapping

from ptcli.errors import UsageError
from ptcli.training.schema import TrainerConfig
from ptcli.training.task import ParamGroup

#: Schedulers that step after every optimizer step; the others step once per epoch.
PER_STEP = frozenset({"one-cycle", "cosine"})


def check_group_names(groups: Mapping[str, list[ParamGroup]], cfg: TrainerConfig) -> None:
    """Every group the config names must exist: a typo would otherwise silently do nothing."""
    known = sorted({g.name for gs in groups.values() for g in gs})
    named = [("trainer.lr_mult", list(cfg.lr_mult)), ("trainer.freeze", cfg.freeze), ("trainer.unfreeze_at", list(cfg.unfreeze_at))]
    for key, names in named:
        for name in names:
            if name not in known:
                raise UsageError(f"{key}: this recipe has no parameter group {name!r}; its groups are {', '.join(known)}")
    for name, epoch in cfg.unfreeze_at.items():
        if name not in cfg.freeze:
            raise UsageError(f"trainer.unfreeze_at.{name}: the group is not frozen; add it to trainer.freeze")
        if epoch < 1:
            raise UsageError(f"trainer.unfreeze_at.{name} must be an epoch number from 1")


def set_frozen(groups: Mapping[str, list[ParamGroup]], names, frozen: bool) -> None:
    for group in (g for gs in groups.values() for g in gs):
        if group.name in names:
            for param in group.params:
                param.requires_grad_(not frozen)


def frozen_at(cfg: TrainerConfig, epoch: int) -> set[str]:
    """Groups frozen during 0-based ``epoch``."""
    return {name for name in cfg.freeze if not (name in cfg.unfreeze_at and epoch + 1 >= cfg.unfreeze_at[name])}


def group_lr(group: ParamGroup, cfg: TrainerConfig) -> float:
    return cfg.lr * cfg.lr_mult.get(group.name, group.lr_mult)


def build_optimizer(groups: list[ParamGroup], cfg: TrainerConfig):
    import torch

    param_groups = [{"params": g.params, "lr": group_lr(g, cfg), "name": g.name} for g in groups if g.params]
    if not param_groups:
        raise UsageError("the recipe gave the optimizer no parameters")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer, cfg: TrainerConfig, steps_per_epoch: int, mode: str):
    """The configured scheduler for one optimizer, or None."""
    import torch.optim.lr_scheduler as sched

    s = cfg.scheduler
    total = cfg.epochs * steps_per_epoch
    if s.name == "one-cycle":
        max_lrs = [g["lr"] for g in optimizer.param_groups]
        return sched.OneCycleLR(optimizer, max_lr=max_lrs, total_steps=total, pct_start=s.pct_start,
                                cycle_momentum=cfg.optimizer == "sgd")
    if s.name == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=total, eta_min=s.min_lr)
    if s.name == "step":
        return sched.StepLR(optimizer, step_size=s.step_size, gamma=s.gamma)
    if s.name == "plateau":
        return sched.ReduceLROnPlateau(optimizer, mode=mode, factor=s.gamma, patience=s.patience)
    return None
