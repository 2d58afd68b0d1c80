"""classify-audio training (book ch. 6): ESC-50 (fold splits) or class folders; AudioNet on
waveforms or a pretrained CNN on mel spectrograms, with SpecAugment and waveform augmentation
on training clips."""

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


class WaveAugmentConfig(Section):
    #: Random gain in +-dB.
    gain_db: float = Field(0.0, ge=0)
    #: Random circular shift, as a fraction of the clip.
    shift: float = Field(0.0, ge=0, le=1)
    #: Add noise at a random SNR from this many dB up to 20 dB more (null: none).
    noise_snr: float | None = None
    #: Random speed change up to +-this fraction.
    speed: float = Field(0.0, ge=0, lt=1)
    #: Random pitch shift up to +-this many semitones (slow on the CPU).
    pitch: float = Field(0.0, ge=0)


class AudioDataConfig(DataConfig):
    layout: Literal["auto", "esc50", "folders"] = "auto"
    #: ESC-50: the folds held out for validation and for `ptcli eval` (the book: train 1-3, val 4, test 5).
    val_folds: list[int] = Field(default_factory=lambda: [4])
    test_folds: list[int] = Field(default_factory=lambda: [5])
    #: ESC-50: keep only the ESC-10 subset.
    esc10: bool = False
    #: Folders: DATA/train/<class>/ and DATA/val/<class>/.
    train_dir: str = "train"
    val_dir: str = "val"
    sample_rate: int = Field(22050, ge=1000)
    clip_seconds: float = Field(5.0, gt=0)
    #: Decode and resample every clip once and keep it in memory (and, for the spectrogram
    #: model without waveform augmentation, its spectrogram).
    cache: bool = False
    augment: WaveAugmentConfig = Field(default_factory=WaveAugmentConfig)


class AudioModelConfig(Section):
    name: Literal["audionet", "spectrogram"] = "spectrogram"
    #: spectrogram: the image CNN (efficientnet_lite0 works offline; resnet50 is the book's).
    backbone: Literal["efficientnet_lite0", "resnet18", "resnet50"] = "efficientnet_lite0"
    pretrained: bool = True
    width: int = Field(128, ge=4)
    dropout: float = Field(0.3, ge=0, lt=1)
    n_mels: int = Field(128, ge=8)
    n_fft: int = Field(1024, ge=64)
    hop: int = Field(512, ge=16)
    #: SpecAugment: widest frequency and time masks (0: off).
    freq_mask: int = Field(0, ge=0)
    time_mask: int = Field(0, ge=0)


class ClassifyAudioConfig(TrainConfig):
    data: AudioDataConfig
    model: AudioModelConfig = Field(default_factory=AudioModelConfig)
    trainer: ClassificationTrainerConfig = Field(default_factory=ClassificationTrainerConfig)


def read_splits(d: AudioDataConfig):
    """(train, val, test clips, classes) for either layout."""
    from .datasets import is_esc50, read_class_folders, read_esc50, split_folds

    root = Path(d.root)
    layout = d.layout if d.layout != "auto" else ("esc50" if is_esc50(root) else "folders")
    if layout == "esc50":
        if not is_esc50(root):
            raise UsageError(f"{root} has no meta/esc50.csv: not the ESC-50 layout")
        clips, classes = read_esc50(root, d.esc10)
        return (*split_folds(clips, d.val_folds, d.test_folds), classes)
    train = read_class_folders(root / d.train_dir)
    val = read_class_folders(root / d.val_dir)
    classes = sorted({c.label for c in train})
    return train, val, [], classes


class ClipDataset:
    def __init__(self, clips, index: dict[str, int], load, augment=None, cache: bool = False, transform=None) -> None:
        self.clips, self.index, self.load, self.augment, self.transform = clips, index, load, augment, transform
        self.cached = [self._prepared(c.path) for c in clips] if cache else None

    def _prepared(self, path):
        from ptcli.errors import InputError

        try:
            wave = self.load(path)
        except InputError as exc:
            raise UsageError(f"{path}: {exc}") from exc
        if self.transform is None:
            return wave
        import torch

        with torch.no_grad():
            return self.transform(wave[None])[0]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int):
        item = self.cached[i] if self.cached is not None else self._prepared(self.clips[i].path)
        if self.augment is not None:
            item = self.augment(item)
        return item, self.index[self.clips[i].label]


class ClassifyAudioTask(ClassifierSteps, TrainingTask):
    config_schema = ClassifyAudioConfig
    monitor = "val/accuracy"
    monitor_mode = "max"

    def setup(self) -> None:
        from ptcli.training.classification import ClassificationLoss

        d = self.config.data
        self.train_clips, self.val_clips, self.test_clips, self.classes = read_splits(d)
        unknown = sorted({c.label for c in self.val_clips} - set(self.classes))
        if unknown:
            raise UsageError(f"validation classes {', '.join(unknown)} have no training clips")
        if not self.val_clips:
            raise UsageError("no validation clips: set data.val_folds (ESC-50) or add a val/ folder")
        self.spec = RECIPE.model_registry.get(self.config.model.name)
        self.loss = ClassificationLoss(self.config.trainer.label_smoothing, self.config.trainer.mixup)

    def preprocessing(self) -> dict:
        d = self.config.data
        return {"sample_rate": d.sample_rate, "clip_samples": int(round(d.sample_rate * d.clip_seconds))}

    def model_args(self) -> dict:
        m = self.config.model
        if m.name == "audionet":
            return {"width": m.width, "dropout": m.dropout}
        return {"backbone_name": m.backbone, "sample_rate": self.config.data.sample_rate, "n_mels": m.n_mels, "n_fft": m.n_fft,
                "hop": m.hop, "freq_mask": m.freq_mask, "time_mask": m.time_mask}

    def build_models(self) -> dict:
        pretrained = {"pretrained": self.config.model.pretrained} if self.config.model.name == "spectrogram" else {}
        return {"model": self.spec.build(num_classes=len(self.classes), **self.model_args(), **pretrained)}

    def param_groups(self, models: Mapping) -> dict[str, list[ParamGroup]]:
        model = models["model"]
        if self.config.model.name == "audionet":
            return {"main": [ParamGroup("model", list(model.parameters()))]}
        head = {id(p) for p in _last_linear(model.backbone).parameters()}
        return {"main": [ParamGroup("backbone", [p for p in model.parameters() if id(p) not in head]),
                         ParamGroup("head", [p for p in model.parameters() if id(p) in head])]}

    def datasets(self):
        from .audio import ClipSpec, LoadClip
        from .augment import WaveAugment

        d = self.config.data
        spec = ClipSpec(**self.preprocessing())
        load = LoadClip(spec)
        a = d.augment
        augment = WaveAugment(d.sample_rate, gain_db=a.gain_db, shift=a.shift, noise_snr=a.noise_snr, speed=a.speed, pitch=a.pitch)
        transform = None
        if d.cache and self.config.model.name == "spectrogram" and not augment.active:
            from .nets import MelFrontend

            m = self.config.model
            transform = MelFrontend(d.sample_rate, m.n_mels, m.n_fft, m.hop).eval()
        index = {name: i for i, name in enumerate(self.classes)}
        train = ClipDataset(self.train_clips, index, load, augment if augment.active else None, d.cache, transform)
        val = ClipDataset(self.val_clips, index, load, None, d.cache, transform)
        return train, val

    def export(self, models: Mapping) -> Export:
        d = self.config.data
        return Export(state_dict=models["model"].state_dict(), model=self.spec.name, classes=list(self.classes),
                      preprocessing=self.preprocessing(), model_args=self.model_args(),
                      extra={"data": {"layout": d.layout, "val_folds": d.val_folds, "test_folds": d.test_folds, "esc10": d.esc10}})



def _last_linear(model):
    import torch

    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
