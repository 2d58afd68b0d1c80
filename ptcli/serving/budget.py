"""Decode memory across requests: each input's decoding holds a share of one budget (bytes, by
the size its header announces) while it runs, so that many small uploads of huge images (an
86 KB PNG of 9400x9400 pixels takes about 420 MB to decode) wait their turn rather than take
the machine; a thread count alone bounds nothing. One budget per server process (a replica
has its own)."""

from __future__ import annotations

import asyncio
import io
from contextlib import asynccontextmanager

from .spec import AUDIO, IMAGE

#: Default budget: what decoding may hold at once, in bytes.
DEFAULT_BYTES = 768 * 2**20
#: What decoding costs beyond the decoded pixels or samples (conversions, copies), measured on
#: 9400x9400 PNGs: about 420 MB for 88 million pixels, and more with the model's own work beside it.
_IMAGE_BYTES_PER_PIXEL = 6
_AUDIO_BYTES_PER_SAMPLE = 12


def decode_cost(kind: str, raw) -> int:
    """The bytes decoding ``raw`` will hold, from its header (cheap); its own size when the
    header says nothing (the decoder refuses it then, or it is text)."""
    size = len(raw) if isinstance(raw, (bytes, bytearray, str)) else 0
    try:
        if kind == IMAGE and isinstance(raw, (bytes, bytearray)):
            from PIL import Image

            Image.MAX_IMAGE_PIXELS = None  # only the header is read here; the decoder checks the limit
            with Image.open(io.BytesIO(raw)) as image:
                width, height = image.size
            return max(size, width * height * _IMAGE_BYTES_PER_PIXEL)
        if kind == AUDIO and isinstance(raw, (bytes, bytearray)):
            import soundfile

            info = soundfile.info(io.BytesIO(raw))
            return max(size, info.frames * info.channels * _AUDIO_BYTES_PER_SAMPLE)
    except Exception:  # not an image or sound it can read: the decoder says so in its own words
        return size
    return size


class DecodeBudget:
    """A weighted semaphore in bytes; a cost over the whole budget takes it alone."""

    def __init__(self, total: int = DEFAULT_BYTES) -> None:
        self.total = total
        self.held = 0
        self._loop = self._changed = None

    def _condition(self) -> asyncio.Condition:
        """The condition of the running event loop (an asyncio primitive belongs to the loop that
        first waits on it; a process may run more than one loop, one after the other)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._changed = loop, asyncio.Condition()
        return self._changed

    async def acquire(self, cost: int) -> int:
        """Wait for ``cost`` (at most the whole budget) to be free; returns what is now held."""
        changed = self._condition()
        cost = min(cost, self.total)
        async with changed:
            await changed.wait_for(lambda: self.held + cost <= self.total)
            self.held += cost
        return cost

    async def release(self, held: int) -> None:
        changed = self._condition()
        async with changed:
            self.held -= held
            changed.notify_all()

    @asynccontextmanager
    async def hold(self, cost: int):
        held = await self.acquire(cost)
        try:
            yield
        finally:
            await self.release(held)


#: This process's budget (ptcli serve sets its size from --decode-budget-mb).
BUDGET = DecodeBudget()


def configure(total_bytes: int) -> None:
    BUDGET.total = total_bytes
