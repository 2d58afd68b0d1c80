"""Language-model data: plain text files cut into fixed-size blocks of token ids."""

from __future__ import annotations

from pathlib import Path

from ptcli.errors import UsageError

EOT = "<|endoftext|>"


def read_corpus(root: Path, encoding: str = "utf-8") -> list[str]:
    """The texts of a .txt file, or of every .txt file under a folder (sorted by path)."""
    root = Path(root)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(p for p in root.rglob("*.txt") if p.is_file())
        if not files:
            raise UsageError(f"no .txt files under {root}")
    else:
        raise UsageError(f"text data not found: {root}")
    texts = []
    for path in files:
        try:
            texts.append(path.read_text(encoding=encoding))
        except UnicodeDecodeError as exc:
            raise UsageError(f"{path} is not {encoding} text; set data.encoding (e.g. latin-1)") from exc
    if not any(text.strip() for text in texts):
        raise UsageError(f"{root} holds no text")
    return texts


def train_byte_level_bpe(texts: list[str], vocab_size: int):
    """GPT-2's kind of tokenizer (byte-level BPE, <|endoftext|>), learnt from ``texts``."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                         show_progress=False)
    backend.train_from_iterator(texts, trainer)
    # GPT2TokenizerFast(vocab_file=..., merges_file=...) encodes to nothing in transformers 5;
    # wrapping the trained object works.
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=EOT, eos_token=EOT, unk_token=EOT)


def token_stream(texts: list[str], tokenizer) -> list[int]:
    """All texts as one sequence of ids, with the end-of-text token between files."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text, add_special_tokens=False)["input_ids"]
        if eos is not None:
            ids.append(eos)
    return ids


def blocks(ids: list[int], block_size: int, stride: int) -> list[list[int]]:
    """Windows of ``block_size`` ids every ``stride`` ids (the incomplete tail is dropped)."""
    return [ids[start:start + block_size] for start in range(0, len(ids) - block_size + 1, stride)]


class Blocks:
    """A Dataset of equal-length id blocks."""

    def __init__(self, rows: list[list[int]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        import torch

        return torch.tensor(self.rows[index], dtype=torch.long)
