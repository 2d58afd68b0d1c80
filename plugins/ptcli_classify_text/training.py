"""classify-text training: labelled CSV/TSV/JSONL (or Sentiment140) data, the book's recurrent
classifier with a tokenizer learnt from the training texts, or a Hugging Face encoder
fine-tuned with a new classification head (ch. 5 and 9)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field

from ptcli.errors import UsageError
from ptcli.training.classification import ClassifierSteps
from ptcli.training.schema import DataConfig, Section, TrainConfig, TrainerConfig
from ptcli.training.task import Export, ParamGroup, TrainingTask

from . import RECIPE
from .models import MINILM, RECURRENT, TRANSFORMER, build_model


class BackTranslationConfig(Section):
    #: Translation model into another language, and one back (hub names or folders).
    to: str
    back: str
    #: Share of the training texts to paraphrase; each paraphrase is added as a new example.
    fraction: float = Field(1.0, gt=0, le=1)
    batch_size: int = Field(16, ge=1)


class AugmentConfig(Section):
    """Per-word probabilities, applied on the fly to training texts only."""

    insert: float = Field(0.0, ge=0, le=1)
    delete: float = Field(0.0, ge=0, lt=1)
    swap: float = Field(0.0, ge=0, le=1)
    #: Synonym replacement; needs ``synonyms``.
    replace: float = Field(0.0, ge=0, le=1)
    #: Word list: one comma-separated group of synonyms per line.
    synonyms: Path | None = None
    back_translation: BackTranslationConfig | None = None


class TextDataConfig(DataConfig):
    #: Files relative to data.root.
    train: str = "train.csv"
    val: str | None = "val.csv"
    #: Hold out this fraction of the training file instead of reading data.val.
    val_fraction: float | None = Field(None, gt=0, lt=1)
    format: Literal["auto", "csv", "tsv", "jsonl", "sentiment140"] = "auto"
    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"
    #: Tokens per text; longer texts are cut (a transformer's own limit caps it).
    max_length: int = Field(128, ge=2)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)


class TokenizerConfig(Section):
    """The tokenizer learnt from the training texts (recurrent models only)."""

    kind: Literal["word", "bpe"] = "word"
    vocab_size: int = Field(20000, ge=10)
    #: Words rarer than this become [UNK].
    min_frequency: int = Field(1, ge=1)
    lowercase: bool = True


class TextModelConfig(Section):
    name: Literal["lstm", "bilstm", "gru", "transformer"] = "bilstm"
    #: transformer: the pretrained model to fine-tune, a hub name (org/name) or a local folder.
    pretrained: str = MINILM
    embed_dim: int = Field(100, ge=1)
    hidden: int = Field(128, ge=1)
    layers: int = Field(1, ge=1)
    dropout: float = Field(0.3, ge=0, lt=1)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)


class TextTrainerConfig(TrainerConfig):
    label_smoothing: float = Field(0.0, ge=0, lt=1)


class ClassifyTextConfig(TrainConfig):
    data: TextDataConfig
    model: TextModelConfig = Field(default_factory=TextModelConfig)
    trainer: TextTrainerConfig = Field(default_factory=TextTrainerConfig)


def stratified_split(labels: list[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, val indices) holding out ``fraction`` of each label, seeded."""
    import random

    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    train, val = [], []
    for label in sorted(by_label):
        indices = by_label[label]
        rng.shuffle(indices)
        cut = max(1, round(len(indices) * fraction)) if len(indices) > 1 else 0
        val += indices[:cut]
        train += indices[cut:]
    return sorted(train), sorted(val)


class TextDataset:
    def __init__(self, texts: list[str], targets: list[int], augment=None) -> None:
        self.texts, self.targets, self.augment = texts, targets, augment

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int):
        text = self.texts[index]
        return (self.augment(text) if self.augment is not None else text), self.targets[index]


class TextCollate:
    """Tokenises a batch of (text, target) into (inputs, targets); a class so that it pickles
    into DataLoader workers."""

    def __init__(self, encoder) -> None:
        self.encoder = encoder

    def __call__(self, items):
        import torch

        inputs, _ = self.encoder([text for text, _ in items])
        return inputs, torch.tensor([target for _, target in items], dtype=torch.long)


class ClassifyTextTask(ClassifierSteps, TrainingTask):
    config_schema = ClassifyTextConfig
    monitor = "val/accuracy"
    monitor_mode = "max"

    # --- data ------------------------------------------------------------------------------
    def _read(self, name: str):
        from ptcli.inference.textfiles import read_labelled

        d = self.config.data
        texts, labels, empty = read_labelled(Path(d.root) / name, fmt=d.format, text_column=d.text_column,
                                             label_column=d.label_column, encoding=d.encoding)
        if empty:
            from ptcli.output import warn

            warn(f"{Path(d.root) / name}: skipped {empty} rows with empty text")
        return texts, labels

    def _splits(self):
        d = self.config.data
        texts, labels = self._read(d.train)
        if d.val_fraction is not None:
            train, val = stratified_split(labels, d.val_fraction, self.config.trainer.seed)
            return ([texts[i] for i in train], [labels[i] for i in train]), ([texts[i] for i in val], [labels[i] for i in val])
        if d.val is None:
            raise UsageError("set data.val (a validation file) or data.val_fraction (a share of data.train to hold out)")
        return (texts, labels), self._read(d.val)

    def setup(self) -> None:
        from ptcli.training.classification import ClassificationLoss

        cfg = self.config
        (train_texts, train_labels), (val_texts, val_labels) = self._splits()
        self.classes = sorted(set(train_labels))
        if len(self.classes) < 2:
            raise UsageError(f"{cfg.data.train} holds one label ({self.classes[0]}); a classifier needs at least two")
        unknown = sorted(set(val_labels) - set(self.classes))
        if unknown:
            raise UsageError(f"validation labels {', '.join(map(repr, unknown))} do not occur in the training data "
                             f"({', '.join(self.classes)})")
        index = {name: i for i, name in enumerate(self.classes)}
        train_texts, train_labels = self._back_translated(train_texts, train_labels)
        self.train = (train_texts, [index[label] for label in train_labels])
        self.val = (val_texts, [index[label] for label in val_labels])
        self.spec = RECIPE.model_registry.get(cfg.model.name)
        self.encoder = self._encoder(train_texts)
        self.loss = ClassificationLoss(cfg.trainer.label_smoothing)

    def _back_translated(self, texts, labels):
        options = self.config.data.augment.back_translation
        if options is None:
            return texts, labels
        import random

        from ptcli.training.processes import map_shared

        from .backtranslate import back_translate

        chosen = sorted(random.Random(self.config.trainer.seed).sample(range(len(texts)), max(1, round(len(texts) * options.fraction))))
        translate = lambda share: back_translate(share, options.to, options.back, device=self.device,  # noqa: E731
                                                 batch_size=options.batch_size)
        paraphrases = map_shared(translate, [texts[i] for i in chosen])  # each process translates its share
        kept = [(text, labels[i]) for text, i in zip(paraphrases, chosen) if text.strip()]
        if len(kept) < len(chosen):
            from ptcli.output import warn

            warn(f"back-translation gave {len(chosen) - len(kept)} empty paraphrases; they were left out")
        return texts + [text for text, _ in kept], labels + [label for _, label in kept]

    def _encoder(self, train_texts):
        from .tokenization import TextEncoder, folder_tokenizer, train_tokenizer

        m, d = self.config.model, self.config.data
        if m.name == TRANSFORMER:
            from .models import model_folder

            self.folder = model_folder(m.pretrained)
            tokenizer, pad_id, model_max = folder_tokenizer(self.folder)
            return TextEncoder(tokenizer, max_length=min(d.max_length, model_max), pad_id=pad_id)
        t = m.tokenizer
        tokenizer = train_tokenizer(train_texts, kind=t.kind, vocab_size=t.vocab_size, min_frequency=t.min_frequency,
                                    lowercase=t.lowercase)
        return TextEncoder(tokenizer, max_length=d.max_length, pad_id=tokenizer.token_to_id("[PAD]"))

    def datasets(self):
        from .augment import Augmenter, read_synonyms

        a = self.config.data.augment
        augmenter = Augmenter(insert=a.insert, delete=a.delete, swap=a.swap, replace=a.replace,
                              synonyms=read_synonyms(a.synonyms) if a.synonyms else None)
        train = TextDataset(*self.train, augment=augmenter if augmenter.active else None)
        return train, TextDataset(*self.val)

    def collate_fn(self):
        return TextCollate(self.encoder)

    # --- model -----------------------------------------------------------------------------
    def model_args(self) -> dict:
        m = self.config.model
        if m.name in RECURRENT:
            return {"vocab_size": self.encoder.vocab_size, "embed_dim": m.embed_dim, "hidden": m.hidden,
                    "layers": m.layers, "dropout": m.dropout, "pad_id": self.encoder.pad_id}
        return {"config": self._transformer_config, "source": m.pretrained}

    def enable_grad_checkpointing(self, models) -> None:
        if self.config.model.name != TRANSFORMER:
            from ptcli.errors import UsageError

            raise UsageError(f"trainer.grad_checkpointing: model {self.config.model.name} does not support it "
                             "(the Hugging Face transformer does)")
        from ptcli.training.gradient_checkpointing import enable_hf_checkpointing

        enable_hf_checkpointing(models["model"])

    def build_models(self) -> dict:
        if self.config.model.name != TRANSFORMER:
            return {"model": build_model(self.spec, len(self.classes), self.model_args(), "config")}
        from .models import load_pretrained

        model = load_pretrained(self.folder, num_classes=len(self.classes), name=self.config.model.pretrained)
        model.config.id2label = dict(enumerate(self.classes))
        model.config.label2id = {name: i for i, name in enumerate(self.classes)}
        # The encoder's position table caps the token limit as well as its tokenizer's setting.
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit:
            self.encoder.max_length = min(self.encoder.max_length, int(limit))
        self._transformer_config = model.config.to_dict()
        return {"model": model}

    def param_groups(self, models: Mapping) -> dict[str, list[ParamGroup]]:
        model = models["model"]
        if self.config.model.name != TRANSFORMER:
            return {"main": [ParamGroup("model", list(model.parameters()))]}
        encoder = {id(p) for p in model.base_model.parameters()}
        return {"main": [ParamGroup("encoder", [p for p in model.parameters() if id(p) in encoder]),
                         ParamGroup("head", [p for p in model.parameters() if id(p) not in encoder])]}

    def logits(self, model, inputs):
        """Both model families take input_ids and attention_mask; transformers return an object."""
        output = model(**inputs)
        return getattr(output, "logits", output)

    # --- results ---------------------------------------------------------------------------
    def export(self, models: Mapping) -> Export:
        d = self.config.data
        return Export(
            state_dict=models["model"].state_dict(),
            model=self.spec.name,
            classes=list(self.classes),
            preprocessing={"max_length": self.encoder.max_length},
            model_args=self.model_args(),
            extra={"data": {"format": d.format, "text_column": d.text_column, "label_column": d.label_column,
                            "encoding": d.encoding},
                   "tokenizer": self.encoder.state()},
        )
