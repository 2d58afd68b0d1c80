"""super-resolve training (book ch. 9): PSNR-oriented pre-training of an RRDBNet with L1 loss,
then the ESRGAN stage from that generator: pixel + perceptual + relativistic GAN losses, a
VGG-style discriminator, generator and discriminator stepping in turn, and an EMA of the
generator (exported as the checkpoint's weights)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field

from ptcli.errors import UsageError
from ptcli.training.schema import DataConfig, Section, TrainConfig, TrainerConfig
from ptcli.training.task import Export, ParamGroup, TrainingTask

from .models import build_rrdbnet


class SRDataConfig(DataConfig):
    hr_dir: str = "hr"
    #: Paired low-resolution images with the same names; null: bicubic downscaling of HR on the fly.
    lr_dir: str | None = "lr_x4"
    scale: Literal[2, 4] = 4
    #: HR crop size for training (a multiple of scale).
    crop: int = Field(128, ge=16)
    #: Random crops per image per epoch.
    repeat: int = Field(16, ge=1)
    augment: bool = True
    #: Share of the images held out for validation (seeded).
    val_fraction: float = Field(0.2, gt=0, lt=1)
    #: HR size of the centre crop validated on.
    val_crop: int = Field(256, ge=16)


class GeneratorConfig(Section):
    num_feat: int = Field(64, ge=4)
    num_block: int = Field(23, ge=1)
    num_grow_ch: int = Field(32, ge=4)
    #: Start from these generator weights: a checkpoint or weights file (the PSNR stage's best).
    pretrained: Path | None = None


class LossConfig(Section):
    pixel: float = Field(1.0, ge=0)
    perceptual: float = Field(0.0, ge=0)
    #: vgg19 (ESRGAN's; ImageNet weights are a download) or efficientnet_lite0 (works offline).
    perceptual_network: Literal["vgg19", "efficientnet_lite0"] = "vgg19"
    #: A local weights file for the perceptual network instead of the download.
    perceptual_weights: Path | None = None
    #: Weight of the relativistic GAN loss; above 0 adds the discriminator.
    gan: float = Field(0.0, ge=0)
    #: Decay of the generator's exponential moving average (0: off).
    ema: float = Field(0.999, ge=0, lt=1)


class DiscriminatorConfig(Section):
    num_feat: int = Field(64, ge=4)
    #: Its lr is trainer.lr times this.
    lr_mult: float = Field(1.0, gt=0)


class SuperResolveConfig(TrainConfig):
    data: SRDataConfig
    model: GeneratorConfig = Field(default_factory=GeneratorConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    discriminator: DiscriminatorConfig = Field(default_factory=DiscriminatorConfig)
    trainer: TrainerConfig = Field(default_factory=lambda: TrainerConfig(lr=2e-4, batch_size=16, optimizer="adam"))


class SuperResolveTask(TrainingTask):
    config_schema = SuperResolveConfig
    # The discriminator (BatchNorm) runs forward several times before each backward.
    ddp_options = {"broadcast_buffers": False}
    monitor = "val/psnr"
    monitor_mode = "max"

    @property
    def gan(self) -> bool:
        return self.config.loss.gan > 0

    def setup(self) -> None:
        from .srdata import pairs, split

        cfg, d = self.config, self.config.data
        if d.crop % d.scale:
            raise UsageError(f"data.crop ({d.crop}) must be a multiple of data.scale ({d.scale})")
        if self.gan and d.crop not in (128, 256):
            raise UsageError(f"the VGG-style discriminator takes 128 or 256 px crops; set data.crop=128 (not {d.crop})")
        root = Path(d.root)
        items = pairs(root / d.hr_dir, root / d.lr_dir if d.lr_dir else None)
        self.train_items, self.val_items = split(items, d.val_fraction, cfg.trainer.seed)
        self.perceptual = None
        if cfg.loss.perceptual > 0:
            from .losses import feature_network

            self.feature_net = feature_network(cfg.loss.perceptual_network, cfg.loss.perceptual_weights)

    def model_args(self) -> dict:
        m = self.config.model
        return {"scale": self.config.data.scale, "num_feat": m.num_feat, "num_block": m.num_block, "num_grow_ch": m.num_grow_ch}

    def enable_grad_checkpointing(self, models) -> None:
        from ptcli.training.gradient_checkpointing import checkpoint_blocks

        checkpoint_blocks(models["generator"], "body")  # the RRDB blocks: most of the activations

    def build_models(self) -> dict:
        generator = build_rrdbnet(**self.model_args())
        if self.config.model.pretrained is not None:
            self._load_generator(generator, self.config.model.pretrained)
        models = {"generator": generator}
        if self.gan:
            from ptcli_super_resolve.basicsr_compat import import_basicsr

            arch = import_basicsr("archs.discriminator_arch")
            models["discriminator"] = arch.VGGStyleDiscriminator(num_in_ch=3, num_feat=self.config.discriminator.num_feat,
                                                                input_size=self.config.data.crop)
        if self.config.loss.ema > 0:
            self.averaged = moving_average(generator, self.config.loss.ema)
            models["ema"] = self.averaged.module  # the bare network: saved, moved and exported as it is
        return models

    def callbacks(self) -> list:
        return [EmaUpdate(self.averaged)] if self.config.loss.ema > 0 else []

    @staticmethod
    def _load_generator(generator, path: Path) -> None:
        from ptcli.models.sidecars import checkpoint_paths
        from ptcli.models.state_dicts import load_state_dict, load_weights_into

        tensors, sidecar = checkpoint_paths(path)
        source = tensors if sidecar.is_file() else Path(path)
        if not source.is_file():
            raise UsageError(f"model.pretrained not found: {path}")
        load_weights_into(generator, load_state_dict(source), source=f"model.pretrained {path}")

    def param_groups(self, models: Mapping) -> dict[str, list[ParamGroup]]:
        groups = {"generator": [ParamGroup("generator", list(models["generator"].parameters()))]}
        if "discriminator" in models:
            groups["discriminator"] = [ParamGroup("discriminator", list(models["discriminator"].parameters()),
                                                  lr_mult=self.config.discriminator.lr_mult)]
        return groups

    def datasets(self):
        from .srdata import TrainCrops, ValCrops

        d = self.config.data
        train = TrainCrops(self.train_items, scale=d.scale, crop=d.crop, repeat=d.repeat, augment=d.augment)
        return train, ValCrops(self.val_items, scale=d.scale, crop=d.val_crop)

    def metrics(self):
        from .losses import sr_metrics

        return sr_metrics()

    def _perceptual(self, device):
        if self.perceptual is None:
            from .losses import PerceptualLoss

            self.perceptual = PerceptualLoss(self.feature_net, device)
        return self.perceptual

    def training_step(self, batch, ctx):
        import torch.nn.functional as F

        from .losses import discriminator_adversarial, generator_adversarial

        lr, hr = batch
        loss_cfg = self.config.loss
        generator = ctx.models["generator"]
        fake = generator(lr)
        losses = {}
        g_loss = loss_cfg.pixel * F.l1_loss(fake, hr)
        losses["pixel"] = g_loss.detach()
        if loss_cfg.perceptual > 0:
            perceptual = self._perceptual(ctx.device)(fake, hr)
            g_loss = g_loss + loss_cfg.perceptual * perceptual
            losses["perceptual"] = perceptual.detach()
        if self.gan:
            discriminator = ctx.models["discriminator"]
            discriminator.requires_grad_(False)  # the generator's step must not train it
            adversarial = generator_adversarial(discriminator(hr).detach(), discriminator(fake))
            discriminator.requires_grad_(True)
            g_loss = g_loss + loss_cfg.gan * adversarial
            losses["gan_g"] = adversarial.detach()
        ctx.optimize(g_loss, "generator")
        if self.gan:
            d_loss = discriminator_adversarial(discriminator(hr), discriminator(fake.detach()))
            ctx.optimize(d_loss, "discriminator")
            losses["gan_d"] = d_loss.detach()
        losses["loss"] = g_loss.detach()
        return losses

    def validation_step(self, batch, ctx):
        import torch.nn.functional as F

        from .losses import y_channel

        lr, hr = batch
        generator = ctx.models.get("ema", ctx.models["generator"])
        fake = generator(lr).float().clamp(0, 1)
        ctx.update_metrics(y_channel(fake), y_channel(hr.float()))
        return {"loss": F.l1_loss(fake, hr.float())}

    def sample_images(self, models: Mapping) -> dict:
        """The first validation image: bicubic, the model's output and the original, side by side."""
        import torch

        from .models import Bicubic
        from .srdata import ValCrops

        if not hasattr(self, "_sample"):
            d = self.config.data
            self._sample = ValCrops(self.val_items[:1], scale=d.scale, crop=d.val_crop)[0]
        lr, hr = self._sample
        generator = models.get("ema", models["generator"])
        device = next(generator.parameters()).device
        was_training = generator.training
        generator.eval()
        with torch.inference_mode():
            sr = generator(lr[None].to(device))[0].float().clamp(0, 1).cpu()
        generator.train(was_training)
        return {"bicubic | model | original": torch.cat([Bicubic(self.config.data.scale)(lr[None])[0], sr, hr], dim=2)}

    def export(self, models: Mapping) -> Export:
        best = models.get("ema", models["generator"])
        return Export(state_dict=best.state_dict(), model="rrdbnet", preprocessing={"scale": self.config.data.scale},
                      model_args=self.model_args())

    @classmethod
    def evaluate(cls, checkpoint: Path, data: Path, *, device, batch_size: int) -> dict:
        from .evaluation import evaluate_checkpoint

        return evaluate_checkpoint(checkpoint, data, device=device)

    @classmethod
    def format_evaluation(cls, report) -> str:
        from .evaluation import format_report

        return format_report(report)


def moving_average(model, decay: float):
    """An exponential moving average of ``model``'s weights (buffers copied), on torch's own
    AveragedModel. It counts as averaged once already, so every update is
    ``ema.lerp(weights, 1 - decay)``, from the first step and after a resume alike (the count is
    not part of the training state)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False).requires_grad_(False)
    averaged.n_averaged.fill_(1)
    return averaged


class EmaUpdate:
    """After each training batch, the generator's weights into its exponential moving average."""

    def __init__(self, averaged) -> None:
        self.averaged = averaged

    def on_batch_end(self, trainer, losses) -> None:
        self.averaged.update_parameters(trainer.ctx.unwrapped("generator"))
