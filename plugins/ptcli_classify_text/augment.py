"""Easy data augmentation (EDA, book ch. 5): random insertion, deletion and swap of words, and
synonym replacement from a word list, applied on the fly to training texts only.

Each probability is per word. Randomness comes from torch's generator (one draw per text), so
a seeded run augments the same way every time."""

from __future__ import annotations

import random
from pathlib import Path

from ptcli.errors import UsageError


def read_synonyms(path: Path) -> dict[str, list[str]]:
    """A word list file: one group of synonyms per line, separated by commas
    (``happy, glad, cheerful``). Lines starting with # are comments."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"synonym file not found: {path}")
    table: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        group = [word.strip().lower() for word in line.split(",") if word.strip()]
        for word in group:
            table.setdefault(word, []).extend(other for other in group if other != word and other not in table[word])
    if not table:
        raise UsageError(f"{path} holds no synonyms (one comma-separated group per line)")
    return table


class Augmenter:
    def __init__(self, *, insert: float = 0.0, delete: float = 0.0, swap: float = 0.0, replace: float = 0.0,
                 synonyms: dict[str, list[str]] | None = None) -> None:
        if replace > 0 and not synonyms:
            raise UsageError("data.augment.replace needs a word list: set data.augment.synonyms=FILE")
        self.insert, self.delete, self.swap, self.replace = insert, delete, swap, replace
        self.synonyms = synonyms or {}

    @property
    def active(self) -> bool:
        return any(p > 0 for p in (self.insert, self.delete, self.swap, self.replace))

    def __call__(self, text: str) -> str:
        import torch

        words = text.split()
        if not self.active or not words:
            return text
        rng = random.Random(int(torch.randint(0, 2**62, ())))
        words = self._replaced(words, rng)
        words = self._inserted(words, rng)
        words = self._swapped(words, rng)
        words = self._deleted(words, rng)
        return " ".join(words)

    def _synonym(self, word: str, rng: random.Random) -> str | None:
        options = self.synonyms.get(word.lower())
        return rng.choice(options) if options else None

    def _replaced(self, words, rng):
        if self.replace <= 0:
            return words
        return [(self._synonym(w, rng) or w) if rng.random() < self.replace else w for w in words]

    def _inserted(self, words, rng):
        """A synonym of a word (or, without one, a copy of a word of the text) at a random place."""
        result = list(words)
        for word in words:
            if rng.random() < self.insert:
                result.insert(rng.randrange(len(result) + 1), self._synonym(word, rng) or rng.choice(words))
        return result

    def _swapped(self, words, rng):
        result = list(words)
        for i in range(len(result)):
            if len(result) > 1 and rng.random() < self.swap:
                j = rng.randrange(len(result))
                result[i], result[j] = result[j], result[i]
        return result

    def _deleted(self, words, rng):
        if self.delete <= 0:
            return words
        kept = [w for w in words if rng.random() >= self.delete]
        return kept or [rng.choice(words)]  # never an empty text
