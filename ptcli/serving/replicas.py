"""Replicas: a model in N processes (per device), each loading it, batching its own queue and
running it, behind the server's one port. The server decodes nothing for them: a request's raw
inputs go to the replica with the fewest inputs in flight, which answers with one outcome per
input (``ptcli.serving.workers.LocalModel`` inside it does the work).

A replica that dies (killed, out of memory, a crash in native code) is noticed at once by its
pipe closing: every request it held is answered 503 ("retry"), never left to time out, and it is
started again (after 1 s, doubling to 30 s while it keeps failing to load).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ptcli.errors import one_line

from . import budget
from .workers import Hooks, ModelInfo, Outcome, Refused, timed_out

_DIED = "the model process died while it held this request; retry"


@dataclass
class _Replica:
    number: int
    device: str
    process: Any = None
    conn: Any = None
    info: ModelInfo | None = None
    inflight: dict = field(default_factory=dict)  # message id -> (future or event queue, inputs)
    failures: int = 0
    generation: int = 0

    @property
    def load(self) -> int:
        return sum(count for _, count in self.inflight.values())


class ReplicaPool:
    def __init__(self, spec, devices: list[str], *, max_queue: int = 256, timeout_s: float = 30.0) -> None:
        self.name, self.spec = spec.name, spec
        self.max_batch, self.max_wait_ms = spec.max_batch, spec.max_wait_ms
        self.max_queue, self.timeout_s = max_queue, timeout_s
        self.hooks = Hooks()
        self.on_load_error = lambda message: None
        self.load_error: str | None = None
        cpus = sum(1 for device in devices if device == "cpu") * spec.replicas
        self._threads = max(1, (os.cpu_count() or 1) // cpus) if cpus else None
        self.replicas = [_Replica(number, device) for number, device in
                         enumerate(device for device in devices for _ in range(spec.replicas))]
        self._ids = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    # --- what the routes use ---------------------------------------------------------------

    @property
    def info(self) -> ModelInfo | None:
        return next((replica.info for replica in self.replicas if replica.info is not None), None)

    @property
    def servable(self):  # a pool has no Servable in this process
        return None

    def queue_depth(self) -> int:
        return sum(replica.load for replica in self.replicas)

    def _pick(self) -> _Replica:
        ready = [replica for replica in self.replicas if replica.info is not None]
        if not ready:
            if self.load_error is not None:
                raise Refused(503, f"the model failed to load: {self.load_error}")
            raise Refused(503, "the model is loading (or restarting)", {"Retry-After": "1"})
        replica = min(ready, key=lambda r: r.load)
        if replica.load >= self.max_queue:
            raise Refused(503, f"the queue is full ({self.max_queue} inputs waiting); retry shortly", {"Retry-After": "1"})
        return replica

    async def predict(self, raws: list, *, deadline: float, want_file: bool = False,
                      options: dict | None = None) -> list[Outcome]:
        from .requests import check_count

        check_count(len(raws), self.max_queue)
        replica = self._pick()
        ident = next(self._ids)
        future = self._loop.create_future()
        replica.inflight[ident] = (future, len(raws))
        self._send(replica, ("predict", ident, raws, deadline, want_file, options))
        try:
            answer = await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise timed_out(self.timeout_s) from None
        finally:
            replica.inflight.pop(ident, None)
        if isinstance(answer, Refused):
            raise answer
        return [Outcome(**outcome) for outcome in answer]

    async def stream(self, raw, *, deadline: float):
        replica = self._pick()
        ident = next(self._ids)
        events: asyncio.Queue = asyncio.Queue()
        replica.inflight[ident] = (events, 1)
        self._send(replica, ("stream", ident, raw, deadline))
        first = await events.get()
        if isinstance(first, Refused):
            replica.inflight.pop(ident, None)
            raise first

        async def rest():
            ended = False
            try:
                event = first
                while event is not None:
                    yield event
                    event = await events.get()
                ended = True
            finally:
                replica.inflight.pop(ident, None)
                if not ended:  # the client went away: the replica stops generating for nobody
                    self._send(replica, ("cancel", ident))

        return rest()

    # --- the processes -------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for replica in self.replicas:
            await self._spawn(replica)

    async def stop(self) -> None:
        self._stopping = True

        def finish(replica: _Replica) -> None:
            try:
                replica.conn.send(("stop",))
            except (OSError, ValueError):
                pass
            replica.process.join(10)
            if replica.process.is_alive():
                replica.process.kill()
                replica.process.join(5)

        await asyncio.gather(*(asyncio.to_thread(finish, replica) for replica in self.replicas if replica.process is not None))

    async def _spawn(self, replica: _Replica) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # never fork a process that holds threads and torch
        ours, theirs = context.Pipe()
        replica.generation += 1
        replica.info, replica.conn = None, ours
        settings = {"name": self.name, "recipe": self.spec.recipe, "model": self.spec.model,
                    "weights": None if self.spec.weights is None else str(self.spec.weights),
                    "checkpoint": None if self.spec.checkpoint is None else str(self.spec.checkpoint),
                    "options": dict(self.spec.options),
                    "device": replica.device, "max_batch": self.max_batch, "max_wait_ms": self.max_wait_ms,
                    "max_queue": self.max_queue, "timeout_s": self.timeout_s, "threads": self._threads,
                    "decode_budget": budget.BUDGET.total}
        replica.process = context.Process(target=replica_main, args=(theirs, settings), daemon=True,
                                          name=f"ptcli-replica-{self.name}-{replica.number}")
        await asyncio.to_thread(replica.process.start)
        theirs.close()
        self.hooks.log({"event": "replica_started", "model": self.name, "replica": replica.number,
                        "device": replica.device, "pid": replica.process.pid})
        generation = replica.generation
        threading.Thread(target=self._read, args=(replica, ours, generation), daemon=True,
                         name=f"ptcli-replica-reader-{replica.number}").start()

    def _send(self, replica: _Replica, message) -> None:
        try:
            replica.conn.send(message)
        except (OSError, ValueError):  # its pipe is gone: the reader will see it die
            pass

    def _read(self, replica: _Replica, conn, generation: int) -> None:
        """The replica's messages, handed to the event loop; EOF when it dies."""
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                self._loop.call_soon_threadsafe(self._died, replica, generation)
                return
            except Exception as exc:  # an answer that would not unpickle: the replica is unusable
                self.hooks.log({"event": "replica_error", "model": self.name, "error": one_line(exc)})
                continue
            self._loop.call_soon_threadsafe(self._receive, replica, message)

    def _receive(self, replica: _Replica, message) -> None:
        kind = message[0]
        if kind == "ready":
            replica.info, replica.failures = ModelInfo(**message[1]), 0
            self.hooks.log({"event": "ready", "model": self.name, "replica": replica.number, "title": replica.info.title})
        elif kind == "failed":
            replica.failures += 1
            if self.info is None and all(r.failures for r in self.replicas) and self.load_error is None:
                self.load_error = message[1]
                self.hooks.log({"event": "load_failed", "model": self.name, "error": message[1]})
                self.on_load_error(message[1])
        elif kind == "batch":
            self.hooks.on_batch(message[1])
        elif kind == "drop":
            self.hooks.on_drop(message[1])
        elif kind == "stages":
            self.hooks.on_stages(message[1])
        elif kind in ("done", "refused", "event", "end"):
            waiting = replica.inflight.get(message[1])
            if waiting is None:
                return  # its request timed out already
            target = waiting[0]
            if kind == "done":
                if not target.done():
                    target.set_result(message[2])
            elif kind == "refused":
                refused = Refused(*message[2:])
                if isinstance(target, asyncio.Queue):
                    target.put_nowait(refused)
                elif not target.done():
                    target.set_result(refused)
            elif kind == "event":
                target.put_nowait(message[2])
            else:
                target.put_nowait(None)

    def _died(self, replica: _Replica, generation: int) -> None:
        if generation != replica.generation:
            return
        replica.info = None
        for target, _ in list(replica.inflight.values()):
            if isinstance(target, asyncio.Queue):
                target.put_nowait({"error": _DIED})
                target.put_nowait(None)
            elif not target.done():
                target.set_result(Refused(503, _DIED, {"Retry-After": "1"}))
        replica.inflight.clear()
        if self._stopping:
            return
        code = replica.process.exitcode if replica.process is not None else None
        self.hooks.log({"event": "replica_died", "model": self.name, "replica": replica.number, "exit_code": code})
        self.hooks.on_restart()
        delay = min(30.0, 2.0 ** replica.failures) if replica.failures else 1.0
        self._loop.call_later(delay, lambda: None if self._stopping else asyncio.ensure_future(self._spawn(replica)))


# --- inside a replica process ------------------------------------------------------------------

def replica_main(conn, settings: dict) -> None:
    """A replica: the model loaded and served over ``conn`` until told to stop or the server's
    end of the pipe closes."""
    import signal

    from ptcli.allocator import reuse_freed_memory

    reuse_freed_memory()  # a process of its own: spawned, it starts with glibc's defaults
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the server drains, then stops us
    if settings["threads"]:
        import torch

        torch.set_num_threads(settings["threads"])
    asyncio.run(_serve_pipe(conn, settings))


async def _serve_pipe(conn, settings: dict) -> None:
    from pathlib import Path

    import torch

    from ptcli.plugins import get_plugins
    from ptcli.serving.spec import load_servable

    from .workers import LocalModel

    loop = asyncio.get_running_loop()

    def send(message) -> None:
        try:
            conn.send(message)
        except (OSError, ValueError):
            pass

    budget.configure(settings["decode_budget"])
    recipe = get_plugins().recipe(settings["recipe"])
    path = lambda value: None if value is None else Path(value)  # noqa: E731
    model = LocalModel(settings["name"], lambda: load_servable(recipe, checkpoint=path(settings["checkpoint"]),
                                                               model=settings["model"], weights=path(settings["weights"]),
                                                               device=torch.device(settings["device"]),
                                                               options=settings["options"]),
                       max_batch=settings["max_batch"], max_wait_ms=settings["max_wait_ms"],
                       max_queue=settings["max_queue"], timeout_s=settings["timeout_s"],
                       hooks=Hooks(on_batch=lambda size: send(("batch", size)), on_drop=lambda count: send(("drop", count)),
                                   on_stages=lambda pairs: send(("stages", pairs))))
    failed = asyncio.Event()
    model.on_load_error = lambda message: (send(("failed", message)), failed.set())
    inbox: asyncio.Queue = asyncio.Queue()

    def read() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                message = None
            loop.call_soon_threadsafe(inbox.put_nowait, message)
            if message is None or message[0] == "stop":
                return

    threading.Thread(target=read, daemon=True).start()
    await model.start()
    while model.info is None and not failed.is_set():
        await asyncio.sleep(0.01)
    if failed.is_set():
        await model.stop()
        return
    send(("ready", dict(vars(model.info))))  # shallow: its declared options go as they are

    async def predict(ident, raws, deadline, want_file, options) -> None:
        try:
            outcomes = await model.predict(raws, deadline=deadline, want_file=want_file, options=options)
        except Refused as refused:
            send(("refused", ident, refused.status, refused.message, refused.headers))
            return
        send(("done", ident, [asdict(outcome) for outcome in outcomes]))

    async def stream(ident, raw, deadline) -> None:
        try:
            events = await model.stream(raw, deadline=deadline)
        except Refused as refused:
            send(("refused", ident, refused.status, refused.message, refused.headers))
            return
        async for event in events:
            send(("event", ident, event))
        send(("end", ident))

    tasks: dict = {}
    while True:
        message = await inbox.get()
        if message is None or message[0] == "stop":
            break
        if message[0] == "cancel":
            running = tasks.get(message[1])
            if running is not None:
                running.cancel()
            continue
        job = predict(*message[1:]) if message[0] == "predict" else stream(*message[1:])
        task = loop.create_task(job)
        tasks[message[1]] = task
        task.add_done_callback(lambda _, ident=message[1]: tasks.pop(ident, None))
    if tasks:  # drain what is in flight, then go
        await asyncio.wait(list(tasks.values()), timeout=settings["timeout_s"])
    await model.stop()
