"""A decoded video frame as the inference contract sees it: one input among others, which a
recipe's ``decode`` reads like an image (ptcli.vision.imaging.read_image takes it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Frame:
    """Frame ``index`` (0-based, counted over the decoded video) of ``source`` (as the user
    named it), shown at ``time`` seconds from the video's start; ``image`` is an RGB PIL image."""

    source: str
    index: int
    time: float
    image: Any

    def __str__(self) -> str:
        return f"{self.source} frame {self.index} ({self.time:.2f} s)"

    def key(self) -> dict:
        """The fields that name this frame in --json."""
        return {"input": self.source, "frame": self.index, "time": round(self.time, 6)}
