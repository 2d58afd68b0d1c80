"""Dynamic batching: requests' inputs wait in one queue; a loop takes up to ``max_batch`` of
them, waiting at most ``max_wait_ms`` after the first, and runs the model on them in its own
thread, off the event loop. Each input's future gets its own row of the result. A CPU model's
inputs decode between its passes, side by side (``between_passes``, ptcli.serving.turns).

An input whose deadline passes while it waits is dropped before the model sees it: its
request has been answered 504 already, and a forward pass for it would only delay the rest."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .turns import Turns, cores


def _watched(predict: Callable[[list], list], items: list, nobody_waits: Callable[[], bool]) -> list:
    """``predict(items)``, able to stop between steps once every request of the batch has been
    answered without it (timed out, client gone): ptcli.inference.cancellation."""
    from ptcli.inference import cancellation

    with cancellation.watching(nobody_waits):
        return predict(items)


class QueueFull(Exception):
    """The queue holds ``max_queue`` inputs already."""


class Expired(TimeoutError):
    """The input's deadline passed before the model could take it."""


class Batcher:
    def __init__(self, predict: Callable[[list], list], *, max_batch: int, max_wait_ms: float, max_queue: int,
                 on_batch: Callable[[int], None] = lambda size: None,
                 on_drop: Callable[[int], None] = lambda count: None,
                 on_stages: Callable[[list], None] = lambda pairs: None) -> None:
        self.predict = predict
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000, max_queue
        self.on_batch, self.on_drop, self.on_stages = on_batch, on_drop, on_stages
        # A deque and events rather than asyncio.Queue: a get() timed out by wait_for can lose
        # its item on Python 3.11; here nothing leaves the deque but by the loop's own hand.
        self.pending: deque = deque()
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ptcli-model")
        self._decoders: ThreadPoolExecutor | None = None
        self._turns: Turns | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._turns = Turns(on_decoded=self._arrived.set)
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._decoders is not None:
            self._decoders.shutdown(wait=True, cancel_futures=True)

    async def on_model_thread(self, function: Callable):
        """Run ``function()`` on the model's thread (loading, warm-up, a generation): torch
        computes on that one thread only, with every core (ptcli.serving.turns)."""
        return await self._turns.compute(self._executor, function)

    async def between_passes(self, function: Callable):
        """Run ``function()`` (a CPU model's decode) on a core of its own while no forward pass
        runs, beside other decodes; a batch about to run waits for it (ptcli.serving.turns)."""
        if self._decoders is None:  # the model has loaded: torch has its threads now
            self._turns.cores = cores()
            self._decoders = ThreadPoolExecutor(self._turns.cores, thread_name_prefix="ptcli-decode")
        return await self._turns.decode(self._decoders, function)

    def submit(self, item, deadline: float | None = None) -> asyncio.Future:
        """A future for ``item``'s result: (result, size of the batch it ran in). ``deadline``
        (the event loop's clock): past it, the input is dropped unrun (``Expired``)."""
        if len(self.pending) >= self.max_queue:
            raise QueueFull
        future = asyncio.get_running_loop().create_future()
        self.pending.append((item, future, deadline, time.perf_counter()))
        self._arrived.set()
        return future

    async def _next_batch(self) -> list:
        while not self.pending:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = asyncio.get_running_loop().time() + self.max_wait
        # The batch fills for max_wait, and then with the inputs still decoding (they will not
        # wait for the pass after it).
        while len(self.pending) < self.max_batch:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 and not self._turns.decoding:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining if remaining > 0 else None)
            except TimeoutError:
                continue
        batch, dropped, waits = [], 0, []
        now, taken = asyncio.get_running_loop().time(), time.perf_counter()
        while self.pending and len(batch) < self.max_batch:
            item, future, deadline, submitted = self.pending.popleft()
            waits.append(("queue_wait", taken - submitted))
            if future.done():  # its request timed out or went away: skip the work
                dropped += 1
            elif deadline is not None and deadline <= now:
                future.set_exception(Expired())
                dropped += 1
            else:
                batch.append((item, future))
        if dropped:
            self.on_drop(dropped)
        self.on_stages(waits)
        return batch

    async def _loop(self) -> None:
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            self.on_batch(len(batch))
            try:
                futures = [future for _, future in batch]
                started = time.perf_counter()
                results = await self._turns.compute(self._executor, _watched, self.predict, [item for item, _ in batch],
                                                    lambda: all(future.done() for future in futures))
                self.on_stages([("forward", time.perf_counter() - started)])
                if len(results) != len(batch):
                    raise RuntimeError(f"the model gave {len(results)} results for {len(batch)} inputs")
            except Exception as exc:  # one bad batch fails its requests, not the server
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result((result, len(batch)))
