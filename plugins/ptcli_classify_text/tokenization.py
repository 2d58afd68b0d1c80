"""Texts to token ids. One class serves both model families: a `tokenizers` Tokenizer trained
on the training texts (the recurrent models; torchtext is discontinued) or the one a Hugging
Face model folder ships. Its state goes into the checkpoint sidecar, so a checkpoint alone
classifies new text."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ptcli.errors import CheckpointError, UsageError
from ptcli.models.hub import trust_remote_code

PAD, UNK = "[PAD]", "[UNK]"


def train_tokenizer(texts: Iterable[str], *, kind: str = "word", vocab_size: int = 20000, min_frequency: int = 1,
                    lowercase: bool = True):
    """A word-level or BPE tokenizer learnt from ``texts``, with [PAD] = 0 and [UNK] = 1."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import BPE, WordLevel
    from tokenizers.trainers import BpeTrainer, WordLevelTrainer

    if kind == "word":
        tokenizer = Tokenizer(WordLevel(unk_token=UNK))
        trainer = WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, UNK],
                                   show_progress=False)  # it would draw on stdout
    else:
        tokenizer = Tokenizer(BPE(unk_token=UNK))
        trainer = BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, UNK],
                             show_progress=False)
    steps = [normalizers.NFD(), normalizers.StripAccents()] + ([normalizers.Lowercase()] if lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def folder_tokenizer(folder: Path):
    """The fast tokenizer of a Hugging Face model folder, and its padding id."""
    from transformers import AutoTokenizer

    try:
        loaded = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load the tokenizer of {folder}: {' '.join(str(exc).split())[:200]}") from exc
    backend = getattr(loaded, "backend_tokenizer", None)
    if backend is None:
        raise UsageError(f"{folder} has no fast (Rust) tokenizer (tokenizer.json); ptcli needs one")
    pad_id = loaded.pad_token_id
    if pad_id is None:  # GPT-style models have none; the attention mask hides padding anyway
        pad_id = loaded.eos_token_id if loaded.eos_token_id is not None else 0
    return backend, int(pad_id), int(min(loaded.model_max_length, 1_000_000))


class TextEncoder:
    """Encodes a batch of texts to padded ``input_ids`` and ``attention_mask``, truncating each
    text to ``max_length`` tokens."""

    def __init__(self, tokenizer, *, max_length: int, pad_id: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.pad_id = int(pad_id)
        tokenizer.no_padding()
        tokenizer.no_truncation()

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def __call__(self, texts: Sequence[str]) -> tuple[dict[str, Any], int]:
        """(batch, number of texts that were cut to max_length)."""
        import torch

        encodings = self.tokenizer.encode_batch(list(texts))
        ids = [e.ids for e in encodings]
        truncated = sum(len(row) > self.max_length for row in ids)
        ids = [self._cut(row, e.special_tokens_mask) for row, e in zip(ids, encodings)]
        width = max(1, max(len(row) for row in ids))
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}, truncated

    def fits(self, text: str) -> bool:
        """Whether ``text`` is within ``max_length`` tokens (else the model reads its start)."""
        return len(self.tokenizer.encode(text).ids) <= self.max_length

    def _cut(self, ids: list[int], special: list[int]) -> list[int]:
        """The first max_length tokens, keeping a closing special token ([SEP], </s>) last."""
        if len(ids) <= self.max_length:
            return ids
        if special and special[-1] == 1 and self.max_length > 1:
            return ids[: self.max_length - 1] + ids[-1:]
        return ids[: self.max_length]

    def state(self) -> dict:
        return {"tokenizer": json.loads(self.tokenizer.to_str()), "max_length": self.max_length, "pad_id": self.pad_id}

    @classmethod
    def from_state(cls, state: Any, source: str) -> TextEncoder:
        from tokenizers import Tokenizer

        if not isinstance(state, dict) or not {"tokenizer", "max_length", "pad_id"} <= set(state):
            raise CheckpointError(f"{source} holds no tokenizer; it was not made by classify-text training")
        try:
            tokenizer = Tokenizer.from_str(json.dumps(state["tokenizer"]))
        except Exception as exc:  # the Rust side raises plain Exceptions
            raise CheckpointError(f"{source}: its tokenizer cannot be read: {' '.join(str(exc).split())[:200]}") from exc
        return cls(tokenizer, max_length=state["max_length"], pad_id=state["pad_id"])
