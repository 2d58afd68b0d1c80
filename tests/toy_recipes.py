"""Two small training recipes for the trainer's tests, registered in-process.

toy-classify: a two-layer MLP on two Gaussian blobs, with parameter groups ``body`` and
``head`` and dropout (so resuming must restore the RNG), and ``data.interrupt_at`` to send
this process a real SIGINT after that many training batches.
toy-gan: a generator and a discriminator with two optimizers stepping in turn, no validation.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import torch
from pydantic import Field
from torch import nn

from ptcli import hookimpl
from ptcli.recipe import DeviceSupport, Recipe
from ptcli.training.classification import classification_metrics
from ptcli.training.schema import ClassificationTrainerConfig, DataConfig, TrainConfig
from ptcli.training.task import Export, ParamGroup, TrainingTask


class ToyData(DataConfig):
    root: Path = Path(".")
    samples: int = 64
    interrupt_at: int | None = None
    interrupt_in_validation: bool = False


class ToyConfig(TrainConfig):
    data: ToyData = Field(default_factory=ToyData)
    trainer: ClassificationTrainerConfig = Field(default_factory=ClassificationTrainerConfig)


def blobs(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    points = torch.randn(n, 2, generator=g) * 0.8 + (labels[:, None] * 2.0 - 1.0)
    return torch.utils.data.TensorDataset(points, labels)


class ToyClassify(TrainingTask):
    config_schema = ToyConfig
    monitor = "val/accuracy"
    monitor_mode = "max"

    def setup(self):
        self.batches = 0

    def build_models(self):
        return {"model": nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))}

    def param_groups(self, models):
        model = models["model"]
        return {"main": [ParamGroup("body", list(model[0].parameters())), ParamGroup("head", list(model[3].parameters()))]}

    def datasets(self):
        return blobs(self.config.data.samples, 1), blobs(32, 2)

    def metrics(self):
        return classification_metrics(2)

    def training_step(self, batch, ctx):
        x, y = batch
        loss = nn.functional.cross_entropy(ctx.model(x), y)
        ctx.optimize(loss)
        self.batches += 1
        if self.batches == self.config.data.interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)
        return {"loss": loss.detach()}

    def validation_step(self, batch, ctx):
        x, y = batch
        if self.config.data.interrupt_in_validation and not getattr(self, "interrupted", False):
            self.interrupted = True  # once: a second Ctrl-C stops at once, by design
            os.kill(os.getpid(), signal.SIGINT)
        logits = ctx.model(x)
        ctx.update_metrics(logits, y)
        return {"loss": nn.functional.cross_entropy(logits, y)}

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
