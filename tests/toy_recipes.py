"""Two small training recipes for the trainer's tests, registered in-process.

toy-classify: a two-layer MLP on two Gaussian blobs, with parameter groups ``body`` and
``head`` and dropout (so resuming must restore the RNG), and ``data.interrupt_at`` to send
this process a real SIGINT after that many training batches.
toy-gan: a generator and a discriminator with two optimizers stepping in turn, no validation.
"""

from __future__ import annotations

import signal
from pathlib import Path

import torch
from pydantic import Field
from torch import nn
from torchmetrics import Metric

from interrupts import ctrl_c_to_self
from ptcli import hookimpl
from ptcli.plugins.recipe import DeviceSupport, Recipe
from ptcli.training.classification import classification_metrics
from ptcli.training.schema import ClassificationTrainerConfig, DataConfig, TrainConfig
from ptcli.training.task import Export, ParamGroup, TrainingTask


class ToyData(DataConfig):
    root: Path = Path(".")
    samples: int = 64
    interrupt_at: int | None = None
    interrupt_in_validation: bool = False
    val_samples: int = 32
    #: Validate with a metric whose per-sample inputs differ in size (as boxes per image do).
    ragged_metric: bool = False
    #: Record the trainer's events through a task callback (in EVENTS).
    record_events: bool = False
    #: A task hook that raises ValueError("<hook> broke"), as a buggy plugin's would.
    fail_in: str | None = None
    #: The model's dropout (0: none, where a test compares two ways of running it to the bit).
    dropout: float = 0.2
    #: Send this process SIGINT at the N-th trainer event (1-based, counting every event).
    sigint_at_event: int | None = None
    #: Send it twice there (the second press stops at once).
    sigint_twice: bool = False
    #: Augment training samples in __getitem__ from torch's, numpy's and Python's global generators.
    augment: bool = False
    #: Batches from a grouped batch sampler (three groups by index), as detection's aspect ratios.
    grouped: bool = False


class ToyConfig(TrainConfig):
    data: ToyData = Field(default_factory=ToyData)
    trainer: ClassificationTrainerConfig = Field(default_factory=ClassificationTrainerConfig)


def blobs(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    points = torch.randn(n, 2, generator=g) * 0.8 + (labels[:, None] * 2.0 - 1.0)
    return torch.utils.data.TensorDataset(points, labels)


#: What EventLog saw: event names, and which callback came first.
EVENTS: list = []


class EventLog:
    def __getattr__(self, name):
        if not name.startswith("on_"):
            raise AttributeError(name)

        def record(trainer, *args):
            EVENTS.append(name[3:])
            if name == "on_fit_start":
                EVENTS.append(f"first callback: {type(trainer.callbacks[0]).__name__}")

        return record


class NoisyBlobs(torch.utils.data.Dataset):
    """Augmentation the way datasets usually draw it: from the three global generators."""

    def __init__(self, base) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index):
        import random

        import numpy as np

        x, y = self.base[index]
        noise = torch.randn(2) * 0.3 + float(np.random.normal(0, 0.3)) + random.gauss(0, 0.3)
        return x + noise, y


class SignalAt:
    """Ctrl-C timed against the trainer's events: SIGINT to this process at the N-th event of
    the run, before the core's callbacks handle that event (task callbacks run first)."""

    #: The signal sent (a test running the trainer in a subprocess sends SIGKILL).
    signum = signal.SIGINT

    def __init__(self, at: int, times: int = 1) -> None:
        self.at, self.seen, self.times = at, 0, times

    def __getattr__(self, name):
        if not name.startswith("on_"):
            raise AttributeError(name)

        def count(trainer, *args):
            self.seen += 1
            if self.seen == self.at:
                for _ in range(self.times):
                    ctrl_c_to_self(self.signum)

        return count


class BoxCount(Metric):
    """A metric updated with lists (one tensor of any length per sample): the boxes seen."""

    def __init__(self):
        super().__init__()
        self.add_state("boxes", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, predictions: list, targets: list) -> None:
        assert isinstance(predictions, list) and len(predictions) == len(targets)
        self.boxes += sum(len(p) for p in predictions)

    def compute(self):
        return self.boxes


class ToyClassify(TrainingTask):
    config_schema = ToyConfig
    monitor = "val/accuracy"
    monitor_mode = "max"

    def _maybe_fail(self, hook: str) -> None:
        if self.config.data.fail_in == hook:
            raise ValueError(f"{hook} broke")

    def setup(self):
        self._maybe_fail("setup")
        self.batches = 0
        if self.config.data.ragged_metric:
            self.monitor = "val/boxes"

    def build_models(self):
        dropout = self.config.data.dropout if self.config is not None else 0.2
        return {"model": nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 2))}

    def param_groups(self, models):
        model = models["model"]
        return {"main": [ParamGroup("body", list(model[0].parameters())), ParamGroup("head", list(model[3].parameters()))]}

    def datasets(self):
        train = blobs(self.config.data.samples, 1)
        return NoisyBlobs(train) if self.config.data.augment else train, blobs(self.config.data.val_samples, 2)

    def batch_sampler(self, dataset, batch_size, seed):
        if not self.config.data.grouped:
            return None
        from ptcli.training.sampling import GroupedBatches

        self.sampler = GroupedBatches([i % 3 for i in range(len(dataset))], batch_size, seed)
        return self.sampler

    def metrics(self):
        if self.config.data.ragged_metric:
            from torchmetrics import MetricCollection

            return MetricCollection({"boxes": BoxCount()})
        return classification_metrics(2)

    def callbacks(self):
        data = self.config.data
        return ([EventLog()] if data.record_events else []) + ([SignalAt(data.sigint_at_event, 2 if data.sigint_twice else 1)] if data.sigint_at_event else [])

    def training_step(self, batch, ctx):
        self._maybe_fail("training_step")
        x, y = batch
        loss = nn.functional.cross_entropy(ctx.model(x), y)
        ctx.optimize(loss)
        self.batches += 1
        if self.batches == self.config.data.interrupt_at:
            ctrl_c_to_self()
        return {"loss": loss.detach()}

    def validation_step(self, batch, ctx):
        self._maybe_fail("validation_step")
        x, y = batch
        if self.config.data.interrupt_in_validation and not getattr(self, "interrupted", False):
            self.interrupted = True  # once: a second Ctrl-C stops at once, by design
            ctrl_c_to_self()
        logits = ctx.model(x)
        if self.config.data.ragged_metric:
            # Sample i "detects" y_i + 1 boxes: the whole validation set holds sum(y + 1) of them.
            ctx.update_metrics([torch.zeros(int(label) + 1, 4) for label in y], list(y))
            self.wrapped_as = (type(ctx.model).__name__, type(ctx.unwrapped()).__name__)
        else:
            ctx.update_metrics(logits, y)
        return {"loss": nn.functional.cross_entropy(logits, y)}

    @classmethod
    def evaluate(cls, checkpoint, data, *, device, batch_size):
        if data.name == "boom":
            raise RuntimeError("evaluate broke")
        return {"checkpoint": str(checkpoint), "device": str(device), "device_class": type(device).__name__}

    def export(self, models):
        return Export(models["model"].state_dict(), model="toy-mlp", classes=["a", "b"])


class GanData(DataConfig):
    root: Path = Path(".")


class GanConfig(TrainConfig):
    data: GanData = Field(default_factory=GanData)


TARGET = torch.tensor([2.0, 2.0])


class ToyGan(TrainingTask):
    config_schema = GanConfig
    monitor = "train/loss_g"
    monitor_mode = "min"

    def build_models(self):
        return {
            "generator": nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)),
            "discriminator": nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1)),
        }

    def param_groups(self, models):
        return {name: [ParamGroup(name, list(model.parameters()))] for name, model in models.items()}

    def datasets(self):
        g = torch.Generator().manual_seed(3)
        return torch.utils.data.TensorDataset(torch.randn(128, 2, generator=g) * 0.1 + TARGET), None

    def training_step(self, batch, ctx):
        (real,) = batch
        generator, discriminator = ctx.models["generator"], ctx.models["discriminator"]
        bce = nn.functional.binary_cross_entropy_with_logits
        fake = generator(torch.randn(real.shape[0], 4, device=ctx.device))
        d_real, d_fake = discriminator(real), discriminator(fake.detach())
        loss_d = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        ctx.optimize(loss_d, "discriminator")
        judged = discriminator(fake)
        loss_g = bce(judged, torch.ones_like(judged))
        ctx.optimize(loss_g, "generator")
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach()}

    def export(self, models):
        return Export(models["generator"].state_dict(), model="toy-generator")


@hookimpl
def register_recipes(register):
    register(Recipe(name="toy-classify", help="test recipe", training=ToyClassify,
                    devices=DeviceSupport(precisions=("fp32", "bf16", "fp16"))))
    register(Recipe(name="toy-gan", help="test recipe", training=ToyGan))
