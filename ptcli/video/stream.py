"""Frames through a Predictor: a reader thread decodes frames (and runs the predictor's
``decode`` on them) while the model works on the previous batch; batches go through the one
contract's ``predict``. A bounded queue between the two keeps memory flat however long the
video is."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from ptcli.inference.contract import Predictor

_END = object()


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetch:
    """``items``, produced up to ``depth`` ahead in a thread. An exception raised there is
    raised here, after the items made before it. ``close()`` stops the thread."""

    def __init__(self, items: Iterator, depth: int) -> None:
        self._buffer: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._items = items
        self._thread = threading.Thread(target=self._produce, name="ptcli-video-reader", daemon=True)
        self._thread.start()

    def _put(self, value) -> bool:
        while not self._stop.is_set():
            try:
                self._buffer.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as error:  # handed to the consumer, which decides
            self._put(_Raised(error))
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()

    def ready(self) -> bool:
        """Whether ``next`` would return without waiting."""
        return not self._buffer.empty()

    def get(self):
        """The next item; ``Prefetch.END`` after the last; a ``Prefetch.Raised`` holding the
        reader's exception, if it raised one (after the items before it)."""
        return self._buffer.get()

    END, Raised = _END, _Raised

    def close(self) -> None:
        """Stops the thread and waits for it: what it reads (a video container) may only be
        closed after. A network read gives up within its own timeout (ptcli.video.reader)."""
        self._stop.set()
        self._thread.join(timeout=60)


class InPlace:
    """Prefetch's surface with no thread: each item is made when it is asked for."""

    END, Raised = _END, _Raised

    def __init__(self, items: Iterator) -> None:
        self._items = items

    def ready(self) -> bool:
        return False

    def get(self):
        try:
            return next(self._items)
        except StopIteration:
            return _END
        except Exception as error:  # as Prefetch hands the reader's error over
            return _Raised(error)

    def close(self) -> None:
        close = getattr(self._items, "close", None)
        if close is not None:
            close()


def _decoded(predictor: Predictor, frames: Iterator) -> Iterator[tuple[Any, Any]]:
    from ptcli.errors import InputError
    from ptcli.inference.results import Failed

    for frame in frames:
        try:
            yield frame, predictor.decode(frame)
        except InputError as error:
            yield frame, Failed(str(error))


#: Pixels of decoded frames held at once (read ahead and batched): a video of huge frames is run
#: a frame at a time rather than taking gigabytes (64 million: about 190 MB as RGB).
HELD_PIXELS = 64_000_000


def frames_held(frame_pixels: int | None) -> int:
    """How many frames of ``frame_pixels`` fit in HELD_PIXELS (at least one)."""
    return max(1, HELD_PIXELS // frame_pixels) if frame_pixels else 1_000_000


def predict_frames(predictor: Predictor, frames: Iterator, *, batch_size: int, wait_for_batch: bool = True,
                   chunk_batch: int | None = None, frame_pixels: int | None = None) -> Iterator[tuple[Any, Any]]:
    """(frame, result fields or Failed) for each frame, in order. ``wait_for_batch`` False (a
    live source): a batch is what has arrived, so results never wait for frames to come. An
    error of the reader (a damaged video) is raised after the frames before it. Frames of
    ``frame_pixels`` are held no more than HELD_PIXELS allows, batches included."""
    from ptcli.inference.results import Failed
    from ptcli.inference.timings import stage

    if predictor.chunked:  # a frame's pieces (tiles) are the batch
        chunk_batch, batch_size = chunk_batch or predictor.chunk_batch or batch_size, 1
    fit = frames_held(frame_pixels)
    batch_size = min(batch_size, fit)
    if fit > batch_size:
        decoded = Prefetch(_decoded(predictor, frames), depth=min(max(2, 2 * batch_size), fit - batch_size))
    else:  # frames so large that one at a time is all the budget holds: none read ahead
        decoded = InPlace(_decoded(predictor, frames))
    ended, error = False, None
    try:
        while not ended:
            pending: list = []
            while len(pending) < batch_size and not (pending and not wait_for_batch and not decoded.ready()):
                with stage("decode"):  # demuxing and decoding, in the reader's thread: the wait for it
                    value = decoded.get()
                if value is Prefetch.END or isinstance(value, Prefetch.Raised):
                    ended, error = True, getattr(value, "error", None)
                    break
                pending.append(value)
            good = [sample for _, sample in pending if not isinstance(sample, Failed)]
            outputs = iter(predictor.predict(good, chunk_batch=chunk_batch) if good else ())
            for frame, sample in pending:
                yield frame, sample if isinstance(sample, Failed) else next(outputs)
        if error is not None:
            raise error
    finally:
        decoded.close()
