"""The causal language models generate-text knows: GPT-2 and its sizes by their short names,
any Hugging Face causal LM by hub name (org/name) or local folder, and fine-tuned checkpoints."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptcli.errors import CheckpointError, UsageError, flatten
from ptcli.models.hub import add_hub_resolver, hub_spec, quiet_transformers, trust_remote_code
from ptcli.plugins.recipe import ModelRegistry, ModelSpec

DEFAULT_MODEL = "gpt2"
#: Short names and the repositories they live in now.
KNOWN = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "distilgpt2": "distilbert/distilgpt2",
}
FINE_TUNED = "causal-lm"
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def _build_from_config(*, config: Mapping[str, Any], **_):
    """A causal LM with random weights from a stored transformers config."""
    from transformers import AutoConfig, AutoModelForCausalLM

    settings = dict(config)
    model_type = settings.pop("model_type", None)
    # A checkpoint's sidecar is data from whoever made the file: none of its config may name code
    # (an auto_map class, an attention implementation fetched from the Hub).
    if "auto_map" in settings:
        raise CheckpointError("the checkpoint's config names its own model code (auto_map); ptcli builds only "
                              "transformers' own architectures from a checkpoint")
    for key in ("attn_implementation", "_attn_implementation", "_attn_implementation_internal"):
        if settings.get(key) not in (None, "eager", "sdpa"):
            raise CheckpointError(f"the checkpoint's config asks for the attention implementation {settings[key]!r}; "
                                  "ptcli builds with eager or sdpa only")
    try:
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **settings))
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"cannot build a {model_type} language model: {flatten(exc, 200)}") from exc


def make_registry() -> ModelRegistry:
    registry = ModelRegistry("generate-text", list_hint=f"models: {', '.join(KNOWN)}, a Hugging Face name (org/name) "
                             "or a local model folder")
    for short, repo in KNOWN.items():
        registry.add(hub_spec(short, hf_repo=repo, description=f"{repo} (downloaded once)"))
    registry.add(ModelSpec(name=FINE_TUNED, build=_build_from_config, description="a fine-tuned checkpoint (model_args hold its config)"))
    add_hub_resolver(registry)
    return registry


def model_folder(name: str) -> Path:
    from ptcli.models.hub import model_folder as resolve_folder

    from . import RECIPE

    return resolve_folder(name, RECIPE.model_registry, no_weights_hint="it is built from a checkpoint; pass --checkpoint")


def check_causal(config, name: str) -> None:
    architectures = config.architectures or []
    if not any(a.endswith(_CAUSAL_SUFFIXES) for a in architectures):
        raise UsageError(f"{name} is not a causal language model (architectures: {', '.join(architectures) or 'unknown'}); "
                         "generate-text needs one such as gpt2")


def load_folder(folder: Path, *, name: str, dtype=None):
    """(model, tokenizer) from a Hugging Face model folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the model config in {folder}: {flatten(exc, 200)}") from exc
    check_causal(config, name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code())
        model = AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=trust_remote_code(), dtype=dtype or torch.float32)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{name} cannot be loaded as a causal language model: {flatten(exc, 200)}") from exc
    return model, tokenizer


def tokenizer_state(tokenizer) -> dict:
    """What rebuilds a fast tokenizer: its Rust tokenizer and its special tokens."""
    special = {key: str(value) for key, value in tokenizer.special_tokens_map.items() if isinstance(value, str)}
    return {"tokenizer": json.loads(tokenizer.backend_tokenizer.to_str()), "special_tokens": special,
            "model_max_length": int(min(tokenizer.model_max_length, 1_000_000))}


def tokenizer_from_state(state: Any, source: str):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    if not isinstance(state, dict) or "tokenizer" not in state:
        raise CheckpointError(f"{source} holds no tokenizer; it was not made by generate-text training")
    try:
        backend = Tokenizer.from_str(json.dumps(state["tokenizer"]))
    except Exception as exc:  # the Rust side raises plain Exceptions
        raise CheckpointError(f"{source}: its tokenizer cannot be read: {flatten(exc, 200)}") from exc
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=state.get("model_max_length", 1024),
                                   **state.get("special_tokens", {}))


@dataclass
class LanguageModel:
    model: Any
    tokenizer: Any
    name: str

    @property
    def context(self) -> int:
        config = self.model.config
        for key in ("n_positions", "max_position_embeddings", "n_ctx"):
            if getattr(config, key, None):
                return int(getattr(config, key))
        return int(self.tokenizer.model_max_length)


def _named_model(name: str, _weights, dtype=None):
    from ptcli.models.loading import LoadedModel

    model, tokenizer = load_folder(model_folder(name), name=name, dtype=dtype)
    return LoadedModel(model, source=name, extra=tokenizer)


def _rebuild(spec: ModelSpec, ckpt):
    args = ckpt.meta.get("model_args") or {}
    if spec.name != FINE_TUNED or "config" not in args:
        raise CheckpointError(f"checkpoint {ckpt.path} names model {ckpt.model!r} without a config; generate-text cannot rebuild it")
    return _build_from_config(config=args["config"])


def load_language_model(model_name: str | None, checkpoint: Path | None, *, dtype=None) -> LanguageModel:
    from functools import partial

    from ptcli.models.loading import load_model

    from . import RECIPE

    quiet_transformers()
    loaded = load_model(RECIPE, checkpoint=checkpoint, model=model_name, default=DEFAULT_MODEL,
                        options=("--model", "--checkpoint"), rebuild=_rebuild, from_name=partial(_named_model, dtype=dtype),
                        needs_labels=False)
    if checkpoint is None:
        return LanguageModel(loaded.model, loaded.extra, loaded.source)
    tokenizer = tokenizer_from_state(loaded.meta.get("tokenizer"), f"checkpoint {checkpoint}")
    model = loaded.model.to(dtype) if dtype is not None else loaded.model
    return LanguageModel(model, tokenizer, str(checkpoint))


def load_checkpoint_model(path: Path, *, dtype=None) -> LanguageModel:
    return load_language_model(None, path, dtype=dtype)


def export_hf(lm: LanguageModel, folder: Path) -> Path:
    """A standard Hugging Face folder (config.json, model.safetensors, tokenizer files)."""
    folder = Path(folder)
    if not hasattr(lm.model, "save_pretrained"):
        raise UsageError(f"{lm.name} is an ONNX export; --export-hf writes the checkpoint or model it came from")
    if folder.exists() and any(folder.iterdir()):
        raise UsageError(f"{folder} exists and is not empty; give a new folder for --export-hf")
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder
