"""Batches drawn within groups: aspect-ratio grouping for detectors, which pad every image of
a batch to the largest, so a tall image beside a wide one wastes most of both (torchvision's
references group the same way).

The order is a function of (seed, epoch) alone, so a run resumed in the middle of an epoch
skips exactly the batches it already trained on. Every sample is used once per epoch: what a
group has left over when the epoch ends is batched together at the end.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence


def aspect_ratio_groups(ratios: Sequence[float], bins_per_side: int = 3) -> list[int]:
    """The group of each width/height ratio: bins spaced evenly in log2 from 1/2 to 2, as
    torchvision's create_aspect_ratio_groups."""
    edges = [2 ** (-1 + 2 * i / (2 * bins_per_side)) for i in range(2 * bins_per_side + 1)]
    return [bisect_right(edges, ratio) for ratio in ratios]


class GroupedBatches:
    """A batch sampler: batches of ``batch_size`` indices sharing a group, in a shuffled order
    that ``set_epoch`` changes (the trainer calls it before each epoch)."""

    def __init__(self, groups: Sequence[int], batch_size: int, seed: int = 0) -> None:
        self.groups = list(groups)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        counts: dict[int, int] = {}
        for group in self.groups:
            counts[group] = counts.get(group, 0) + 1
        full = sum(n // self.batch_size for n in counts.values())
        rest = sum(n % self.batch_size for n in counts.values())
        return full + -(-rest // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        import torch

        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.groups), generator=generator).tolist()
        pending: dict[int, list[int]] = {}
        for index in order:
            batch = pending.setdefault(self.groups[index], [])
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                pending[self.groups[index]] = []
        rest = [index for group in sorted(pending) for index in pending[group]]
        for start in range(0, len(rest), self.batch_size):
            yield rest[start: start + self.batch_size]
