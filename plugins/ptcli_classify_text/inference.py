"""Batched inference over texts, shared by `classify-text` and `ptcli eval`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ptcli.errors import InputError


def check_text(text: str) -> str:
    if not text.strip():
        raise InputError("empty text: nothing to classify")
    return text


class EncodeBatch:
    """The batching step: tokenise a batch, counting the texts cut to the model's limit."""

    def __init__(self, encoder) -> None:
        self.encoder = encoder
        self.truncated = 0

    def __call__(self, texts: list[str]):
        batch, truncated = self.encoder(texts)
        self.truncated += truncated
        return batch


def classify_batched(classifier, texts: Sequence[str], *, device, batch_size: int, description: str,
                     postprocess=lambda logits: logits) -> tuple[Iterator, EncodeBatch]:
    """(iterator of (text, result or Failed), the encoder step whose ``truncated`` counts the
    texts cut so far). Texts are tokenised in this process: Rust tokenizers are fast and
    threaded, so worker processes would only add start-up time."""
    from ptcli.inference.batching import run_batched_with_progress

    encode = EncodeBatch(classifier.encoder)
    results = run_batched_with_progress(
        description,
        list(texts),
        load=check_text,
        forward=lambda batch: classifier.logits(batch).float().cpu(),
        postprocess=postprocess,
        device=device,
        batch_size=batch_size,
        workers=0,
        collate=encode,
    )
    return results, encode
