"""detect training: COCO-format data, any torchvision detector with a new predictor for the
data's classes, or Faster R-CNN on the offline EfficientNet-Lite0, through the shared trainer;
mAP by COCO's rules (book ch. 9)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ptcli.errors import UsageError
from ptcli.training.schema import DataConfig, SchedulerConfig, Section, TrainConfig, TrainerConfig
from ptcli.training.task import Export, ParamGroup, TrainingTask

from . import RECIPE
from .models import OFFLINE_MODEL


class DetectDataConfig(DataConfig):
    #: A folder with images/, train.json and val.json (the layout of ../shared/data/detection)...
    root: Path | None = None
    #: ...or the annotation files and the image folder, named one by one.
    train: Path | None = None
    val: Path | None = None
    images: Path | None = None
    augment: Literal["none", "light", "strong"] = "light"
    #: Copy-paste: the chance that a training image gets 1-3 objects of other training images
    #: pasted onto it (rescaled 0.7-1.4x, where they overlap nothing). 0: off.
    copy_paste: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _one_layout(self):
        if self.root is None and self.train is None:
            raise ValueError("give data.root (a folder with images/, train.json, val.json) or data.train (a COCO file)")
        return self


class DetectModelConfig(Section):
    #: fasterrcnn_lite0_fpn (offline ImageNet backbone) or a torchvision detector (COCO weights).
    name: str = OFFLINE_MODEL
    #: Start from published weights: the backbone's ImageNet weights (Lite0, packaged) or the
    #: detector's COCO weights (torchvision models, downloaded once).
    pretrained: bool = True
    #: Backbone layers trained, from the top (0-5); the rest stay as pretrained.
    trainable_layers: int = Field(3, ge=0, le=5)
    #: The detector's own resize: short side to min_size, long side at most max_size
    #: (default: the model's; fasterrcnn_lite0_fpn 320/512, torchvision's 800/1333).
    min_size: int | None = Field(None, ge=32)
    max_size: int | None = Field(None, ge=32)
    #: fasterrcnn_lite0_fpn: FPN width and one anchor size per level (strides 8, 16, 32, 64).
    fpn_channels: int = Field(128, ge=8)
    #: Multi-scale training: each training batch is resized to one of these short sides (or
    #: min_size) at random; validation and inference use min_size. Empty: min_size only.
    train_sizes: list[int] = Field(default_factory=list)
    anchor_sizes: list[int] = Field(default_factory=lambda: [16, 32, 64, 128])
    #: R-CNNs: proposals sampled per training image for the box head (torchvision's
    #: box_batch_size_per_image, 512 by default; at most a quarter are objects). The box loss is
    #: divided by the number sampled, so with a few objects an image 512 mostly adds background
    #: that dilutes it, and the head's cost grows with the number: at 128 a training step took
    #: 0.66 s against 1.44 s (Lite0, a batch of 4, 2 CPU cores).
    box_batch_size_per_image: int | None = Field(None, ge=1)


class DetectTrainerConfig(TrainerConfig):
    # torchvision's detection references: SGD, momentum 0.9, lr 0.02 for 16 images (0.01 for 4-8).
    optimizer: Literal["adam", "adamw", "sgd"] = "sgd"
    lr: float = Field(0.01, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(4, ge=1)
    # A warm-up, then annealing, and clipped gradients: without them SGD at 0.01 diverged after
    # four epochs on ../shared/data/detection (the references warm up for their first 1000 steps).
    scheduler: SchedulerConfig = Field(default_factory=lambda: SchedulerConfig(name="one-cycle"))
    grad_clip: float | None = Field(10.0, gt=0)
    #: Batch images of like aspect ratio (less padding), as torchvision's references do.
    aspect_ratio_groups: bool = True


class DetectConfig(TrainConfig):
    data: DetectDataConfig
    model: DetectModelConfig = Field(default_factory=DetectModelConfig)
    trainer: DetectTrainerConfig = Field(default_factory=DetectTrainerConfig)


def validation_loss(model, images, targets):
    """torchvision's detectors give losses only in training mode: a second forward in it, with
    every BatchNorm kept in eval mode so that validation changes no statistics (the trainer runs
    this under no_grad). val/loss breaks ties of val/map when the best checkpoint is picked."""
    from torch import nn

    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    try:
        losses = model(images, [{k: v for k, v in t.items() if k != "image_id"} for t in targets])
    finally:
        model.eval()
    return sum(losses.values())


def _losses(loss_dict: Mapping) -> dict:
    return {name.removeprefix("loss_"): value for name, value in loss_dict.items()}


class DetectTask(TrainingTask):
    config_schema = DetectConfig
    monitor = "val/map"
    monitor_mode = "max"
    draws_pictures = True  # the precision-recall curve and validation images with their boxes

    def setup(self) -> None:
        from .cocodata import coco_split, load_split

        data = self.config.data
        train_file = coco_split(data.root, data.train, "train")
        if train_file is None:
            raise UsageError(f"data.root={data.root} has no train.json; name the file with data.train")
        self.train_set = load_split(train_file, data.images)
        val_file = coco_split(data.root, data.val, "val")
        self.val_set = load_split(val_file, data.images) if val_file is not None else None
        if self.val_set is not None and self.val_set.categories != self.train_set.categories:
            raise UsageError(f"{val_file} and {train_file} list different categories")
        self.spec = RECIPE.model_registry.get(self.config.model.name)
        self.classes = self.train_set.names
        self.masks = bool(self.spec.preprocessing.get("masks"))

    def model_args(self) -> dict:
        m = self.config.model
        args = {key: value for key, value in {"min_size": m.min_size, "max_size": m.max_size}.items() if value is not None}
        if self.spec.name == OFFLINE_MODEL:
            args.update(fpn_channels=m.fpn_channels, anchor_sizes=list(m.anchor_sizes), trainable_layers=m.trainable_layers)
        return args

    def build_models(self) -> dict:
        m = self.config.model
        num_classes = len(self.classes) + 1
        if self.spec.name == OFFLINE_MODEL:
            model = self.spec.build(num_classes=num_classes, pretrained=m.pretrained, **self.model_args())
        else:
            if m.pretrained:
                from ptcli.models.weights import resolve

                resolve(self.spec.weights)  # into torch hub's cache, where the builder reads it; offline: the one-line error
            model = self.spec.build(num_classes=num_classes, pretrained=m.pretrained, trainable_layers=m.trainable_layers,
                                    **self.model_args())
        transform = getattr(model, "transform", None)
        if m.train_sizes and transform is not None and hasattr(transform, "min_size"):
            # torchvision draws one of min_size's entries per training batch and evaluates at the last.
            transform.min_size = (*m.train_sizes, transform.min_size[-1])
        heads = getattr(model, "roi_heads", None)  # set here: a training setting, not the checkpoint's
        if m.box_batch_size_per_image is not None:
            if heads is None:
                raise UsageError(f"model.box_batch_size_per_image: {self.spec.name} is not an R-CNN (it has no box head on proposals)")
            heads.fg_bg_sampler.batch_size_per_image = m.box_batch_size_per_image
        return {"model": model}

    def param_groups(self, models: Mapping) -> dict[str, list[ParamGroup]]:
        model = models["model"]
        backbone = [p for p in model.backbone.parameters()]
        ids = {id(p) for p in backbone}
        heads = [p for p in model.parameters() if id(p) not in ids]
        return {"main": [ParamGroup("backbone", backbone), ParamGroup("heads", heads)]}

    def datasets(self):
        from .cocodata import CocoDetectionSet

        label_of = self.train_set.label_of()
        train = CocoDetectionSet(self.train_set, label_of, masks=self.masks, augment=self.config.data.augment, train=True,
                                 copy_paste=self.config.data.copy_paste)
        val = CocoDetectionSet(self.val_set, label_of, masks=self.masks) if self.val_set is not None else None
        return train, val

    def collate_fn(self):
        from .cocodata import collate

        return collate

    def batch_sampler(self, dataset, batch_size: int, seed: int):
        if not self.config.trainer.aspect_ratio_groups:
            return None
        from ptcli.training.sampling import GroupedBatches, aspect_ratio_groups

        return GroupedBatches(aspect_ratio_groups(dataset.aspect_ratios), batch_size, seed)

    def metrics(self):
        from torchmetrics import MetricCollection

        from .metrics import DetectionMAP

        return MetricCollection({"map": DetectionMAP(self.classes, masks=self.masks)})

    def training_step(self, batch, ctx) -> dict:
        images, targets = batch
        targets = [{k: v for k, v in t.items() if k != "image_id"} for t in targets]
        losses = ctx.models["model"](list(images), targets)
        loss = sum(losses.values())
        ctx.optimize(loss)
        return {"loss": loss.detach(), **{k: v.detach() for k, v in _losses(losses).items()}}

    def validation_step(self, batch, ctx) -> dict:
        images, targets = list(batch[0]), batch[1]
        from .metrics import metric_inputs

        from .models import detect_by_size

        pairs = [metric_inputs(p, t, self.masks) for p, t in zip(detect_by_size(ctx.models["model"], images), targets)]
        ctx.update_metrics([pred for pred, _ in pairs], [truth for _, truth in pairs])
        return {"loss": validation_loss(ctx.unwrapped("model"), images, targets)}

    def export(self, models: Mapping) -> Export:
        return Export(
            state_dict=models["model"].state_dict(),
            model=self.spec.name,
            classes=list(self.classes),
            preprocessing={"masks": self.masks},
            model_args=self.model_args(),
            extra={"category_ids": self.train_set.category_ids},
        )

    @classmethod
    def evaluate(cls, checkpoint: Path, data: Path, *, device, batch_size: int) -> dict:
        from .evaluation import evaluate_checkpoint

        return evaluate_checkpoint(checkpoint, data, device=device, batch_size=batch_size)

    @classmethod
    def format_evaluation(cls, report: Mapping) -> str:
        from .evaluation import format_report

        return format_report(report)
