"""classify-image training: ImageFolder data, the book's networks from scratch or transfer
learning with a frozen backbone and a new head (ch. 2-4)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field

from ptcli.errors import UsageError
from ptcli.training.classification import ClassifierSteps
from ptcli.training.schema import ClassificationTrainerConfig, DataConfig, Section, TrainConfig
from ptcli.training.task import Export, ParamGroup, TrainingTask

from . import RECIPE
from .models import DEFAULT_MODEL, IMAGENET_MEAN, IMAGENET_STD, SCRATCH_MODELS, build_model


class ImageDataConfig(DataConfig):
    train_dir: str = "train"
    val_dir: str = "val"
    #: Hold out this fraction of train/ when there is no val/ folder.
    val_fraction: float | None = Field(None, gt=0, lt=1)
    #: Crop size; default: 64 for simplenet and cnnnet, the backbone's own size for transfer.
    image_size: int | None = Field(None, ge=8)
    #: Short side before cropping; default: image_size for simplenet/cnnnet, the backbone's for transfer.
    resize: int | None = Field(None, ge=8)
    #: imagenet statistics, or mean and std computed from the training images.
    normalize: Literal["imagenet", "data"] = "imagenet"
    augment: Literal["none", "light", "book"] = "light"


class ImageModelConfig(Section):
    #: simplenet, cnnnet (from scratch), or a backbone: efficientnet_lite0, resnet50, timm/<name>...
    name: str = "simplenet"
    #: Start a backbone from its published ImageNet weights.
    pretrained: bool = True
    #: The new head on a backbone: the book's Linear-ReLU-Dropout-Linear, or one Linear layer.
    head: Literal["book", "linear"] = "book"
    hidden: int = Field(500, ge=1)
    dropout: float = Field(0.5, ge=0, lt=1)


class AdversarialConfig(Section):
    """Adversarial training (book ch. 9). ``pgd``/``fgsm`` (Madry et al.): part of each batch
    replaced by adversarial examples of itself, crafted against the model as it is. ``trades``
    (Zhang et al., 2019): the clean loss plus ``beta`` times the KL divergence between the
    predictions on each image and on its worst neighbour within eps. ``noise: gaussian``
    (Cohen et al., 2019): Gaussian noise of ``sigma`` on every image instead of attacks, the
    training that makes `ptcli certify` certify well."""

    method: Literal["pgd", "fgsm", "trades"] = "pgd"
    #: L-inf budget in pixel values of [0, 1] (0.1 for digits, 4/255 = 0.0157 for photos).
    eps: float = Field(0.1, ge=0, le=1)
    steps: int = Field(7, ge=1)
    #: PGD's step (default 2.5 * eps / steps).
    step_size: float | None = Field(None, gt=0)
    #: The fraction of each batch that is replaced (pgd, fgsm; trades uses the whole batch).
    ratio: float = Field(0.5, ge=0, le=1)
    #: TRADES' weight of robustness against clean accuracy (1/lambda in the paper; 6 there).
    beta: float = Field(6.0, ge=0)
    #: Epochs over which eps grows linearly from eps/warmup_epochs to eps (0: full eps at once).
    warmup_epochs: int = Field(0, ge=0)
    #: gaussian: train on noisy images (randomized smoothing) instead of adversarial ones.
    noise: Literal["gaussian"] | None = None
    #: The noise's standard deviation in pixel values (certify with the same --sigma).
    sigma: float = Field(0.25, gt=0, le=1)


class DistillConfig(Section):
    """Knowledge distillation (defensive distillation, Papernot et al.): the student learns the
    teacher checkpoint's probabilities softened at ``temperature``."""

    teacher: Path
    temperature: float = Field(20.0, gt=0)
    #: Weight of the true labels' loss beside the teacher's (0: the teacher's alone).
    alpha: float = Field(0.0, ge=0, le=1)


class ClassifyImageConfig(TrainConfig):
    data: ImageDataConfig
    model: ImageModelConfig = Field(default_factory=ImageModelConfig)
    trainer: ClassificationTrainerConfig = Field(default_factory=ClassificationTrainerConfig)
    adversarial: AdversarialConfig | None = None
    distill: DistillConfig | None = None


def is_scratch(name: str) -> bool:
    return name in {spec.name for spec in SCRATCH_MODELS}


class ClassifyImageTask(ClassifierSteps, TrainingTask):
    config_schema = ClassifyImageConfig
    monitor = "val/accuracy"
    monitor_mode = "max"

    def setup(self) -> None:
        from .imagefolder import channel_stats, scan

        cfg = self.config
        self.spec = RECIPE.model_registry.get(cfg.model.name)
        self.split = scan(cfg.data.root, cfg.data.train_dir, cfg.data.val_dir, cfg.data.val_fraction, cfg.trainer.seed)
        self.classes = self.split.classes
        self.preprocessing = self._preprocessing()
        if cfg.data.normalize == "data":
            mean, std = channel_stats(self.split.train, self.preprocessing)
            self.preprocessing.update(mean=mean, std=std)
        from ptcli.training.classification import ClassificationLoss

        self.loss = ClassificationLoss(cfg.trainer.label_smoothing, cfg.trainer.mixup)
        self.teacher = self._teacher() if cfg.distill is not None else None
        if cfg.adversarial is not None:
            # The best checkpoint of adversarial training is the most robust one: clean accuracy
            # peaks epochs before robustness does (measured on digits: +8 points of robust
            # accuracy between the best-clean and the last epoch). With noise, "robust" is the
            # accuracy on noisy images, what the smoothed classifier is built from.
            self.monitor = "val/robust_accuracy"

    def _preprocessing(self) -> dict:
        data, own = self.config.data, dict(self.spec.preprocessing)
        if is_scratch(self.spec.name):
            size = data.image_size or 64
            return {"resize": data.resize or size, "crop": size, "interpolation": "bilinear",
                    "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
        size = data.image_size or int(own.get("crop", 224))
        resize = data.resize or (int(own["resize"]) if not data.image_size and "resize" in own else round(size * 8 / 7))
        return {"resize": resize, "crop": size, "interpolation": own.get("interpolation", "bilinear"),
                "mean": list(own.get("mean", IMAGENET_MEAN)), "std": list(own.get("std", IMAGENET_STD))}

    def _teacher(self):
        from .models import load_classifier

        path = self.config.distill.teacher
        net, classes, preprocessing = load_classifier(None, None, path)
        if list(classes) != list(self.classes):
            raise UsageError(f"distill.teacher {path} has the classes {classes}, not the data's {self.classes}")
        mine = {k: self.preprocessing[k] for k in ("crop", "mean", "std")}
        theirs = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in preprocessing.items() if k in mine}
        if theirs != mine:
            raise UsageError(f"distill.teacher {path} preprocesses images as {theirs}, this run as {mine}: "
                             "give the student the teacher's data settings (data.image_size, data.normalize)")
        for parameter in net.parameters():
            parameter.requires_grad_(False)
        return net.to(self.device).eval()

    def training_step(self, batch, ctx):
        cfg = self.config
        if cfg.adversarial is None and self.teacher is None:
            return super().training_step(batch, ctx)
        inputs, targets = batch
        adv = cfg.adversarial
        if adv is not None and adv.noise is None and adv.method == "trades":
            return self._trades_step(inputs, targets, ctx)
        if adv is not None and adv.noise == "gaussian":
            inputs = self._noisy(inputs, adv.sigma)
        elif adv is not None and adv.ratio > 0:
            inputs = self._with_adversarial(inputs, targets, ctx)
        logits = ctx.model(inputs)
        if self.teacher is None:
            loss = self.loss(logits, targets)
        else:
            import torch
            import torch.nn.functional as F

            distill = cfg.distill
            with torch.no_grad():
                soft = F.softmax(self.teacher(inputs).float() / distill.temperature, dim=-1)
            kl = F.kl_div(F.log_softmax(logits.float() / distill.temperature, dim=-1), soft, reduction="batchmean")
            loss = (1 - distill.alpha) * kl * distill.temperature ** 2 + distill.alpha * self.loss(logits, targets)
        ctx.optimize(loss)
        return {"loss": loss.detach()}

    def metrics(self):
        if self.config.adversarial is None:
            return super().metrics()
        from torchmetrics import MetricCollection

        from .robust_metrics import CleanAndRobustAccuracy

        return MetricCollection({"accuracy": CleanAndRobustAccuracy(len(self.classes))})

    def validation_step(self, batch, ctx):
        if self.config.adversarial is None:
            return super().validation_step(batch, ctx)
        import torch

        inputs, targets = batch
        logits = ctx.model(inputs).float()
        if self.config.adversarial.noise == "gaussian":
            generator = torch.Generator(device=inputs.device).manual_seed(0)
            attacked = self._noisy(inputs, self.config.adversarial.sigma, generator)
        else:
            with torch.enable_grad():  # validation runs under no_grad; the attack needs gradients
                attacked = self._adversarial(inputs, targets, ctx, seed=0, eps=self.config.adversarial.eps)
        ctx.update_metrics(logits, ctx.model(attacked).float(), targets)
        return {"loss": self.loss.criterion(logits, targets)}

    def _pixels(self, inputs):
        """(mean, std) to undo and redo the normalisation around work in pixel space."""
        import torch

        mean = torch.tensor(self.preprocessing["mean"], device=inputs.device).view(1, -1, 1, 1)
        std = torch.tensor(self.preprocessing["std"], device=inputs.device).view(1, -1, 1, 1)
        return mean, std

    def _noisy(self, inputs, sigma: float, generator=None):
        """Normalised ``inputs`` with Gaussian noise of ``sigma`` added to their pixels."""
        import torch

        mean, std = self._pixels(inputs)
        noise = torch.randn(inputs.shape, generator=generator, device=inputs.device, dtype=inputs.dtype)
        return inputs + sigma * noise / std

    def _eps(self, ctx) -> float:
        """This epoch's budget: growing linearly over the warm-up epochs, then eps."""
        adv = self.config.adversarial
        if adv.warmup_epochs == 0:
            return adv.eps
        return adv.eps * min(1.0, (ctx.epoch + 1) / adv.warmup_epochs)

    def _adversarial(self, inputs, targets, ctx, seed: int, eps: float | None = None):
        """Adversarial versions of normalised ``inputs``, crafted in pixel space (the
        normalisation undone and redone around the attack) against the model in eval mode,
        so that the attack's forward passes leave BatchNorm's statistics alone."""
        from ptcli.attacks import fgsm, pgd

        adv = self.config.adversarial
        eps = self._eps(ctx) if eps is None else eps
        if adv.method == "fgsm":
            return self._in_pixels(inputs, ctx, lambda model, pixels: fgsm(model, pixels, targets, eps=eps))
        return self._in_pixels(inputs, ctx, lambda model, pixels: pgd(model, pixels, targets, eps=eps, steps=adv.steps,
                                                                      step_size=adv.step_size, seed=seed))

    def _in_pixels(self, inputs, ctx, craft):
        """``craft(model on pixels, pixels)`` for normalised ``inputs``, normalised again: the
        model in eval mode meanwhile, so that crafting leaves BatchNorm's statistics alone."""
        mean, std = self._pixels(inputs)
        model = ctx.unwrapped()
        pixels = (inputs * std + mean).clamp(0, 1).detach()
        training = model.training
        model.eval()
        try:
            crafted = craft(lambda p: model((p - mean) / std), pixels)
        finally:
            model.train(training)
        return (crafted - mean) / std

    def _trades_step(self, inputs, targets, ctx):
        """TRADES: the worst neighbour within eps by the KL divergence from the clean prediction
        (PGD on it from a tiny random start, the model in eval mode), then the clean loss plus
        beta times that divergence."""
        from ptcli.vision.trades import trades_loss, worst_neighbour

        adv = self.config.adversarial
        seed = self.config.trainer.seed * 1_000_003 + ctx.step
        neighbour = self._in_pixels(inputs, ctx, lambda model, pixels: worst_neighbour(
            model, pixels, eps=self._eps(ctx), steps=adv.steps, step_size=adv.step_size, seed=seed))
        logits = ctx.model(inputs)
        loss = trades_loss(logits, ctx.model(neighbour), targets, adv.beta, self.loss)
        ctx.optimize(loss)
        return {"loss": loss.detach()}

    def _with_adversarial(self, inputs, targets, ctx):
        """The first ``ratio`` of the batch replaced by adversarial examples of itself."""
        import torch

        count = int(round(self.config.adversarial.ratio * inputs.shape[0]))
        if count == 0:
            return inputs
        crafted = self._adversarial(inputs[:count], targets[:count], ctx, seed=self.config.trainer.seed * 1_000_003 + ctx.step)
        return torch.cat([crafted, inputs[count:]])

    def model_args(self) -> dict:
        if is_scratch(self.spec.name):
            return {"image_size": self.preprocessing["crop"]}
        m = self.config.model
        return {"transfer_head": m.head, "hidden": m.hidden, "dropout": m.dropout,
                **({"tensorflow": True} if self.spec.name == DEFAULT_MODEL else {})}

    def build_models(self) -> dict:
        model = build_model(self.spec, len(self.classes), **self.model_args())
        if not is_scratch(self.spec.name) and self.config.model.pretrained:
            self._load_pretrained(model.backbone)
        return {"model": model}

    def _load_pretrained(self, backbone) -> None:
        from ptcli.models.state_dicts import load_state_dict
        from ptcli.models.weights import resolve

        if self.spec.weights is None:
            raise UsageError(f"model {self.spec.name} has no published weights; set model.pretrained=false to train it from scratch")
        state = load_state_dict(resolve(self.spec.weights))
        full = self.spec.build()  # the original architecture, to map names and drop the old classifier
        if self.spec.adapt_state_dict is not None:
            state = self.spec.adapt_state_dict(state, full)
        wanted = backbone.state_dict()
        kept = {k: v for k, v in state.items() if k in wanted}
        missing = [k for k in wanted if k not in kept]
        if missing:
            raise UsageError(f"the published weights of {self.spec.name} do not fit its backbone ({len(missing)} missing, e.g. {missing[0]})")
        backbone.load_state_dict(kept)

    def param_groups(self, models: Mapping) -> dict[str, list[ParamGroup]]:
        model = models["model"]
        if is_scratch(self.spec.name):
            return {"main": [ParamGroup("model", list(model.parameters()))]}
        return {"main": [ParamGroup("backbone", list(model.backbone.parameters())), ParamGroup("head", list(model.head.parameters()))]}

    def datasets(self):
        from .data import Preprocess
        from .imagefolder import ImageDataset, transforms

        train = ImageDataset(self.split.train, transforms(self.preprocessing, self.config.data.augment))
        val = ImageDataset(self.split.val, Preprocess(self.preprocessing))
        return train, val

    def export(self, models: Mapping) -> Export:
        return Export(
            state_dict=models["model"].state_dict(),
            model=self.spec.name,
            classes=list(self.classes),
            preprocessing=self.preprocessing,
            model_args=self.model_args(),
        )


