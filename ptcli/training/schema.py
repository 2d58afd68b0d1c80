"""The configuration every training recipe shares. A recipe subclasses ``TrainConfig`` and
replaces ``data`` and ``model`` with its own sections; unknown keys are errors everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class SchedulerConfig(Section):
    name: Literal["none", "one-cycle", "cosine", "step", "plateau"] = "none"
    #: step: epochs between decays; plateau: epochs without improvement before a decay.
    step_size: int = Field(10, ge=1)
    patience: int = Field(2, ge=0)
    #: step and plateau: the factor the learning rate is multiplied by.
    gamma: float = Field(0.1, gt=0, le=1)
    #: one-cycle: fraction of the steps spent warming up.
    pct_start: float = Field(0.3, gt=0, lt=1)
    #: cosine: the learning rate it decays to.
    min_lr: float = Field(0.0, ge=0)


class EarlyStoppingConfig(Section):
    #: Epochs without improvement of the monitored metric before training stops (None: never).
    patience: int | None = Field(None, ge=1)
    min_delta: float = Field(0.0, ge=0)


class ProfileConfig(Section):
    """torch.profiler's schedule: skip ``wait`` steps, warm up for ``warmup``, record ``active``."""

    wait: int = Field(1, ge=0)
    warmup: int = Field(1, ge=0)
    active: int = Field(3, ge=1)


class EmaConfig(Section):
    """An exponential moving average of the weights (ptcli.training.averaging): 0 is off."""

    decay: float = Field(0.0, ge=0, lt=1)
    #: Updates over which the decay warms up to ``decay`` (0: from the first update).
    warmup: int = Field(0, ge=0)


class TrainerConfig(Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    seed: int = 0
    #: Deterministic algorithms (slower on GPU); two CPU runs with one seed match either way.
    deterministic: bool = False
    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    grad_accum: int = Field(1, ge=1)
    grad_clip: float | None = Field(None, gt=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    #: Learning-rate multiplier per parameter group (the book's differential learning rates).
    lr_mult: dict[str, float] = Field(default_factory=dict)
    #: Parameter groups frozen at the start (e.g. [backbone]).
    freeze: list[str] = Field(default_factory=list)
    #: Group -> epoch (1-based) at which a frozen group starts training.
    unfreeze_at: dict[str, int] = Field(default_factory=dict)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    ema: EmaConfig = Field(default_factory=EmaConfig)
    #: torch.compile the trained models with this mode ("off": eager). A model that cannot be
    #: compiled trains eagerly, with one warning saying why.
    compile: Literal["off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "off"
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    #: DataLoader worker processes.
    workers: int = Field(0, ge=0)
    #: Optimizer steps between TensorBoard loss points.
    log_every: int = Field(10, ge=1)
    #: Every N optimizer steps, each layer's output mean and std (forward hooks) into TensorBoard
    #: and metrics.jsonl (book ch. 7); None: off.
    log_activations: int | None = Field(None, ge=1)
    #: Recompute activations in the backward pass instead of storing them (less memory), for
    #: recipes whose models support it (Hugging Face models, RRDBNet).
    grad_checkpointing: bool = False
    #: Profile that many training steps into the run's profile/ folder (trace and flame-graph stacks).
    profile: ProfileConfig | None = None


class ClassificationTrainerConfig(TrainerConfig):
    """Trainer options that only make sense for classifiers (book ch. 9)."""

    label_smoothing: float = Field(0.0, ge=0, lt=1)
    #: Mixup's Beta(alpha, alpha); 0 turns it off.
    mixup: float = Field(0.0, ge=0)


class RunConfig(Section):
    #: Runs go to DIR/<recipe>/<name>/.
    dir: Path = Path("runs")
    #: Default: the config file's name; an existing run gets a -2, -3, ... suffix.
    name: str | None = None
    tensorboard: bool = True
    #: Log to MLflow too: a tracking URI (http://host:5000, sqlite:///mlflow.db), or true for
    #: the MLFLOW_TRACKING_URI environment variable.
    mlflow: bool | str | None = None
    #: The MLflow experiment [default: the recipe's name].
    experiment: str | None = None


class DataConfig(Section):
    root: Path


class TrainConfig(Section):
    recipe: str
    data: DataConfig
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    #: A run folder to continue from.
    resume: Path | None = None
