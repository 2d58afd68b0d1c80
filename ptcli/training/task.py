"""The training contract: what a recipe gives the shared trainer.

A recipe subclasses ``TrainingTask`` and supplies models, parameter groups, data sets, a
training step, a validation step and metrics. The training step does its own optimisation
through ``ctx.optimize(loss, name)``, so one loop serves a classifier (one model, one
optimizer), a model that computes its own loss (detection, language models) and a GAN (two
models, two optimizers stepping in turn), with no special case for any of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ptcli.training.schema import TrainConfig


@dataclass
class ParamGroup:
    """Parameters that share a learning rate and can be frozen together, by name."""

    name: str
    params: list
    #: Multiplies trainer.lr (trainer.lr_mult.<name> in the config overrides it).
    lr_mult: float = 1.0


@dataclass
class Export:
    """What goes into the self-describing checkpoint (``last``/``best``) that inference loads."""

    state_dict: Mapping[str, Any]
    model: str
    classes: list[str] | None = None
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    #: Keyword arguments that rebuild the architecture (stored as ``model_args`` in the sidecar).
    model_args: Mapping[str, Any] = field(default_factory=dict)
    #: More sidecar entries the recipe needs at inference (a tokenizer, a vocabulary).
    extra: Mapping[str, Any] = field(default_factory=dict)


class TrainingTask:
    """Base class for a recipe's training. Override what your task needs."""

    #: The recipe's config schema (a TrainConfig subclass).
    config_schema: ClassVar[type[TrainConfig]] = TrainConfig
    #: The metric that picks the best checkpoint, plateau steps and early stopping.
    monitor: ClassVar[str] = "val/loss"
    monitor_mode: ClassVar[str] = "min"
    #: Options for DistributedDataParallel under torchrun. A GAN sets broadcast_buffers=False:
    #: each forward of a BatchNorm model would otherwise overwrite running statistics that a
    #: pending backward still needs.
    ddp_options: ClassVar[dict[str, Any]] = {}
    #: Whether the recipe's `ptcli eval` report has pictures (a confusion matrix, a PR curve):
    #: then a finished run scores its best checkpoint on the data root and draws them into the
    #: run folder (ptcli.training.pictures.EvaluationPictures).
    draws_pictures: ClassVar[bool] = False

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        #: The device this process trains on (under torchrun, its own GPU); the trainer sets
        #: it before setup(), for work done there such as back-translation.
        self.device: Any = None

    # --- building ----------------------------------------------------------------------
    def setup(self) -> None:
        """Read what models depend on (class names, vocabularies). Runs before build_models."""

    def build_models(self) -> dict[str, Any]:
        """name -> torch.nn.Module"""
        raise NotImplementedError

    def enable_grad_checkpointing(self, models: Mapping[str, Any]) -> None:
        """``trainer.grad_checkpointing: true``: make the models recompute activations in the
        backward pass instead of keeping them (less memory, about a third more compute). A
        recipe whose models support it overrides this; the default refuses."""
        from ptcli.errors import UsageError

        raise UsageError("trainer.grad_checkpointing: this recipe's models do not support gradient checkpointing")

    def param_groups(self, models: Mapping[str, Any]) -> dict[str, list[ParamGroup]]:
        """optimizer name -> its parameter groups. Default: one optimizer over everything."""
        params = [p for model in models.values() for p in model.parameters()]
        return {"main": [ParamGroup("all", params)]}

    def datasets(self) -> tuple[Any, Any | None]:
        """(train, validation or None) torch Datasets."""
        raise NotImplementedError

    def collate_fn(self) -> Callable | None:
        return None

    def batch_sampler(self, dataset: Any, batch_size: int, seed: int) -> Any | None:
        """A batch sampler for the training set instead of plain shuffling (aspect-ratio groups:
        ptcli.training.sampling.GroupedBatches). Its order must depend only on ``seed`` and the
        epoch its ``set_epoch`` is given, so that resuming is exact. Default: None."""
        return None

    def metrics(self) -> Any | None:
        """A torchmetrics MetricCollection updated in validation_step, or None. Each metric
        ``key`` is logged as ``val/<key>``, the name ``monitor`` uses."""
        return None

    def callbacks(self) -> list:
        """The task's own callbacks (``on_<event>(trainer, ...)`` methods, events as in
        ptcli.training.callbacks), run on every process before the core's for each event:
        an EMA of the weights, samples printed every N steps. Default: none."""
        return []

    # --- steps -------------------------------------------------------------------------
    def training_step(self, batch: Any, ctx: StepContext) -> Mapping[str, Any]:
        """Compute losses, call ctx.optimize(loss[, name]) for each optimizer, return the
        losses to log (scalar tensors)."""
        raise NotImplementedError

    def validation_step(self, batch: Any, ctx: StepContext) -> Mapping[str, Any]:
        """Losses to log; update metrics with ctx.update_metrics(preds, target)."""
        return {}

    # --- results -----------------------------------------------------------------------
    def sample_images(self, models: Mapping[str, Any]) -> Mapping[str, Any]:
        """Images for TensorBoard at each epoch's end: name -> CHW float tensor in [0, 1]
        (models are the unwrapped ones, in training mode). Default: none."""
        return {}

    def export(self, models: Mapping[str, Any]) -> Export:
        raise NotImplementedError

    @classmethod
    def evaluate(cls, checkpoint: Path, data: Path, *, device, batch_size: int) -> dict:
        """Score a checkpoint on a data set (``ptcli eval``). ``device`` is a torch.device that
        `--device` resolved to (never "auto"). Returns a JSON-serialisable report; unreadable
        inputs are counted under ``"failed"``."""
        raise NotImplementedError

    @classmethod
    def format_evaluation(cls, report: Mapping[str, Any]) -> str:
        return "\n".join(f"{key}: {value}" for key, value in report.items())


class StepContext:
    """What a step sees: the prepared models, the device, the epoch, and ``optimize``."""

    def __init__(self, trainer) -> None:
        self._trainer = trainer
        self.models: dict[str, Any] = {}
        self.epoch = 0

    @property
    def device(self):
        return self._trainer.accelerator.device

    @property
    def step(self) -> int:
        """Optimizer steps taken so far in the run."""
        return self._trainer.position.step

    @property
    def is_main_process(self) -> bool:
        """True on the one process (of several under DDP) that should print and write files."""
        return self._trainer.accelerator.is_main_process

    @property
    def model(self):
        """The only model, for one-model tasks."""
        if len(self.models) != 1:
            raise RuntimeError("ctx.model is for tasks with one model; use ctx.models[name]")
        return next(iter(self.models.values()))

    def unwrapped(self, name: str | None = None):
        """A model without its DDP (or compile) wrapper: for generating, reading parameters or
        anything but the training forward pass, which must go through ``ctx.models`` so that
        gradients are synchronised. ``name`` may be left out in one-model tasks."""
        if name is None:
            if len(self.models) != 1:
                raise RuntimeError("ctx.unwrapped() needs a model name in tasks with several models")
            name = next(iter(self.models))
        return self._trainer.unwrap(self.models[name])

    def optimize(self, loss, name: str | None = None) -> None:
        """Backward, clip, step and zero one optimizer (gradient accumulation and mixed
        precision included). With several optimizers, ``name`` says which."""
        self._trainer.optimize(loss, name)

    def update_metrics(self, *args) -> None:
        """Gather predictions and targets from every process and update the task's metrics."""
        self._trainer.update_metrics(*args)
