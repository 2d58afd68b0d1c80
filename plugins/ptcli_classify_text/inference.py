"""Reading texts for the model: the empty-text check and the batch tokeniser that counts cuts."""

from __future__ import annotations


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
