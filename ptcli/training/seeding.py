"""Augmentation that a resumed run repeats exactly: each training sample's random draws are
seeded from (seed, epoch, index), whatever process loads it and whatever came before.

A dataset draws its augmentation in ``__getitem__`` from torch's, numpy's and Python's global
generators, as torchvision's transforms and most hand-written code do. Without this, those
draws depend on everything drawn earlier in the same process (the main one with
``trainer.workers=0``, a worker otherwise), so an interrupted epoch resumed from its middle
augments its remaining samples differently. With it, sample i of epoch e is augmented the same
way in every run, and the main process's own stream (dropout, mixup, SpecAugment) is left as
it was, so saving and restoring that stream makes the rest exact.
"""

from __future__ import annotations

import random
from typing import Any


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample of one epoch (distinct for distinct triples in practice)."""
    import hashlib

    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class SeededSamples:
    """A map-style dataset whose item i is drawn under generators seeded for (seed, epoch, i);
    the trainer sets ``epoch`` before each epoch's iterator starts (workers copy it then)."""

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # the wrapped set's own attributes (classes, ...)
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> Any:
        import numpy as np
        import torch

        seed = sample_seed(self.seed, self.epoch, int(index))
        saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.default_generator.manual_seed(seed)  # the CPU one: CUDA's stream stays untouched
        try:
            return self.dataset[index]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])
