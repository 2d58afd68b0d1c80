"""Turns on a CPU's cores between the model and its inputs' decoding: a forward pass takes
every core (torch's threads); between passes, inputs decode side by side, one a core, and the
next batch takes every input that was decoding when its wait ended. Decoding beside a forward
pass took the cores torch computes on (each image's forward slowed from 9.5 to 13.6 ms at 32
clients on 2 cores); decoding one input at a time on the model's thread left the other cores
idle for a quarter of that thread's time (py-spy, bench/serve_peers.py).

Cores go to decodes in the order they asked. When any waiting decode could take a freed core,
one that had waited a whole pass often lost it to a request that had just arrived, and so
waited a second pass: at 32 clients a tenth of requests took three passes and another tenth
one (p10 249, p50 499, p90 759 ms against LitServe's 402, 428, 520)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor


class Turns:
    """Decodes and forward passes, never at once; all of it driven from the event loop. A
    forward pass waits for the decodes running, not for those that ask after it."""

    def __init__(self, cores: int = 1, on_decoded: Callable[[], None] = lambda: None) -> None:
        self.cores = cores  #: how many decodes at once
        self.on_decoded = on_decoded
        #: Decodes asked for and not yet returned to their caller.
        self.decoding = 0
        self._running = 0  # decodes holding a core (their thread may outlive a cancelled caller)
        self._computing = False
        self._changed = asyncio.Event()
        self._queue: deque[asyncio.Future] = deque()  # decodes waiting for a core, oldest first

    def _change(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            await self._changed.wait()

    def _grant(self) -> None:
        """Free cores to the decodes that have waited longest, while no pass holds them. A core
        is taken when it is granted, so a decode that asks later cannot take it first."""
        while self._queue and not self._computing and self._running < self.cores:
            ticket = self._queue.popleft()
            if not ticket.done():  # else cancelled while it waited
                self._running += 1
                ticket.set_result(None)

    def _release(self, _future=None) -> None:
        self._running -= 1
        self._grant()
        self._change()

    def _pass_done(self, _future) -> None:
        self._computing = False
        self._grant()
        self._change()

    async def decode(self, executor: Executor, function: Callable):
        """``function()`` on a core of its own, between forward passes."""
        self.decoding += 1
        try:
            if self._queue or self._computing or self._running >= self.cores:
                ticket = asyncio.get_running_loop().create_future()
                self._queue.append(ticket)
                try:
                    await ticket
                except BaseException:
                    if ticket.done() and not ticket.cancelled():  # granted, then cancelled before it ran
                        self._release()
                    raise
            else:
                self._running += 1
            return await self._on_thread(executor, self._release, function)
        finally:
            self.decoding -= 1
            self.on_decoded()

    async def compute(self, executor: Executor, function: Callable, *args):
        """``function(*args)`` with every core, once the decodes on them have finished."""
        await self._until(lambda: not self._computing)
        self._computing = True
        try:
            await self._until(lambda: self._running == 0)
        except BaseException:  # cancelled before it ran
            self._pass_done(None)
            raise
        return await self._on_thread(executor, self._pass_done, function, *args)

    @staticmethod
    def _on_thread(executor: Executor, done: Callable, function: Callable, *args):
        """``function(*args)`` on ``executor``; ``done`` once its thread has finished with it
        (or it was cancelled before it began), even when its caller has stopped waiting."""
        loop = asyncio.get_running_loop()

        def finished(work) -> None:
            try:
                loop.call_soon_threadsafe(done, work)
            except RuntimeError:  # the loop has closed: nothing waits for its turn any more
                pass

        work = executor.submit(function, *args)
        work.add_done_callback(finished)
        return asyncio.wrap_future(work)


def cores() -> int:
    """How many inputs decode at once: as many as torch computes on (its threads), where torch
    is loaded, else the cores this process may run on."""
    import os
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        return max(1, torch.get_num_threads())
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
