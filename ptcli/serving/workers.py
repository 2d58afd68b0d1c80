"""A served model as the routes see it: inputs in, one outcome per input out, whatever runs the
model. ``LocalModel`` runs it in the server's process (a model thread fed by the batcher);
``ptcli.serving.replicas.ReplicaPool`` runs it in model processes. Both take raw inputs (bytes,
texts, request objects) and decode them beside the model, so a replica needs nothing from the
front but the request."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from ptcli.errors import InputError, one_line

from . import budget
from .batcher import Batcher, Expired, QueueFull
from .requests import check_count
from .spec import Servable


#: One model loads at a time: imports (transformers' lazy modules) are not thread-safe, and
#: loading several at once would only share the same cores.
_LOADING = threading.Lock()


@dataclass
class ModelInfo:
    """What the routes need to know of a loaded model."""

    kind: str
    title: str
    streams: bool = False
    media_type: str | None = None
    #: The keys of its answers (from the warm-up), for the typed tensors of /v2.
    result_keys: tuple = ()
    #: Its predictor's declared options (ptcli.inference.options.Option), those a request may set among them.
    options: tuple = ()
    #: The values it was loaded with (models.yaml's ``options:``, the defaults filled in).
    option_values: dict = field(default_factory=dict)
    #: One answer of the warm-up, for the types of /v2's outputs.
    example: dict | None = None


@dataclass
class Outcome:
    """One input's answer: its result (the command's --json object), or its error and status."""

    result: dict | None = None
    error: str | None = None
    status: int = 200
    #: The result as a file (predictor.encode), when the request asked for one.
    file: bytes | None = None
    batch_size: int | None = None


class Refused(Exception):
    """A whole request refused: an HTTP status and one line (queue full, timed out, loading)."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _loop_time(deadline: float) -> float:
    """A time.monotonic() deadline on the event loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())


def unavailable(load_error: str | None) -> Refused:
    if load_error is not None:
        return Refused(503, f"the model failed to load: {load_error}")
    return Refused(503, "the model is loading", {"Retry-After": "1"})


def timed_out(timeout_s: float) -> Refused:
    return Refused(504, f"no result within --timeout-s {timeout_s:g} s")


@dataclass
class Hooks:
    """Where a model reports to the server's metrics and log."""

    on_batch: Callable[[int], None] = lambda size: None
    on_drop: Callable[[int], None] = lambda count: None
    #: (stage, seconds) pairs: queue_wait, decode, forward, encode (ptcli.serving.metrics).
    on_stages: Callable[[list], None] = lambda pairs: None
    on_restart: Callable[[], None] = lambda: None
    log: Callable[[dict], None] = lambda record: None


@dataclass
class LocalModel:
    """The model in this process: decoded in worker threads (torch-free), batched, and run on
    one model thread, the only thread torch computes on."""

    name: str
    load: Callable[[], Servable]
    max_batch: int = 16
    max_wait_ms: float = 5.0
    max_queue: int = 256
    timeout_s: float = 30.0
    hooks: Hooks = field(default_factory=Hooks)
    servable: Servable | None = None
    load_error: str | None = None
    on_load_error: Callable[[str], None] = lambda message: None
    batcher: Batcher | None = None
    _task: asyncio.Task | None = None
    _result_keys: tuple = ()
    _example: dict | None = None

    @property
    def info(self) -> ModelInfo | None:
        servable = self.servable
        if servable is None:
            return None
        predictor = servable.predictor
        from ptcli.inference.options import declared

        values = getattr(predictor, "option_values", None)
        options = declared(type(predictor), served=True) if predictor is not None else ()
        served = {o.name for o in options}
        return ModelInfo(servable.kind, servable.title, bool(predictor is not None and predictor.streams),
                         getattr(predictor, "media_type", None), self._result_keys, options,
                         {k: v for k, v in values.as_dict().items() if k in served} if values is not None else {},
                         self._example)

    def queue_depth(self) -> int:
        return len(self.batcher.pending) if self.batcher else 0

    async def start(self) -> None:
        self.batcher = Batcher(lambda items: [], max_batch=self.max_batch, max_wait_ms=self.max_wait_ms,
                               max_queue=self.max_queue, on_batch=self.hooks.on_batch, on_drop=self.hooks.on_drop,
                               on_stages=self.hooks.on_stages)
        self.batcher.start()
        self._task = asyncio.get_running_loop().create_task(self._loading())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.batcher is not None:
            await self.batcher.stop()

    def _load_and_warm(self) -> Servable:
        with _LOADING:
            servable = self.load()
            if servable.warmup is not None:
                self._example = servable.predict([servable.warmup])[0]
                self._result_keys = tuple(self._example)
        return servable

    async def _loading(self) -> None:
        try:
            servable = await self.batcher.on_model_thread(self._load_and_warm)
        except Exception as exc:  # the model cannot load: say so once, and on /ready
            self.load_error = one_line(exc)
            self.hooks.log({"event": "load_failed", "model": self.name, "error": self.load_error})
            self.on_load_error(self.load_error)
            return
        self.batcher.predict = servable.predict
        self.servable = servable
        self.hooks.log({"event": "ready", "model": self.name, "title": servable.title})

    def _require(self) -> Servable:
        if self.servable is None:
            raise unavailable(self.load_error)
        return self.servable

    async def predict(self, raws: list, *, deadline: float, want_file: bool = False,
                      options: dict | None = None) -> list[Outcome]:
        """One outcome per raw input, in order. An input that cannot be read is its own 400; a
        full queue, a passed deadline or a failed forward pass refuses the whole request. The
        request holds its share of the decode budget (ptcli.serving.budget), by what its
        headers announce, from before its inputs are decoded until their batch has run: what
        is decoded and waiting counts too. All of it at once, so that two requests never hold
        part each and wait on each other."""
        from starlette.concurrency import run_in_threadpool

        servable = self._require()
        check_count(len(raws), self.max_queue)
        requested = self._requested(servable, options)
        cost = sum(await run_in_threadpool(lambda: [budget.decode_cost(servable.kind, raw) for raw in raws]))
        try:
            async with asyncio.timeout_at(_loop_time(deadline)):  # waiting for the budget counts
                held = await budget.BUDGET.acquire(cost)
        except TimeoutError:
            raise timed_out(self.timeout_s) from None
        try:
            return await self._predict(servable, raws, deadline, want_file, requested)
        finally:
            await budget.BUDGET.release(held)

    async def _decode(self, servable: Servable, raw, seconds: list):
        """One input decoded. A model on the CPU and its decodes take turns on the cores:
        inputs decode side by side between forward passes (ptcli.serving.turns). A GPU's model
        decodes in threads while it computes. ``seconds`` gets ("decode", the
        seconds the decoding itself took, not its wait for the thread)."""
        from starlette.concurrency import run_in_threadpool

        def decode():
            started = time.perf_counter()
            try:
                return servable.decode(raw)
            finally:
                seconds.append(("decode", time.perf_counter() - started))

        device = getattr(servable.predictor, "device", None)
        if getattr(device, "type", None) == "cpu":
            return await self.batcher.between_passes(decode)
        return await run_in_threadpool(decode)

    @staticmethod
    def _requested(servable: Servable, options: dict | None) -> tuple:
        """A request's option values, checked against what its model declares a request may
        set (a 400 naming the option), as the sorted pairs its inputs carry to the model."""
        from ptcli.inference.options import OptionError, declared, settle

        if not options:
            return ()
        declaration = declared(type(servable.predictor), served=True)
        try:
            values = settle(declaration, options, requested=True)
        except OptionError as exc:
            raise Refused(400, str(exc)) from None
        return tuple(sorted(values.items()))

    async def _predict(self, servable: Servable, raws: list, deadline: float, want_file: bool,
                       requested: tuple = ()) -> list[Outcome]:
        from ptcli.inference.contract import Requested

        outcomes: list[Outcome] = []
        decoded: list[tuple[int, object]] = []
        decoding: list[tuple[str, float]] = []
        for raw in raws:
            try:
                decoded.append((len(outcomes), await self._decode(servable, raw, decoding)))
                outcomes.append(Outcome())
            except InputError as exc:
                outcomes.append(Outcome(error=str(exc), status=400))
        self.hooks.on_stages(decoding)
        futures: list[asyncio.Future] = []
        try:
            for _, item in decoded:
                futures.append(self.batcher.submit(Requested(item, requested) if requested else item, deadline))
        except QueueFull:
            for future in futures:  # the inputs that got in go unrun: the request is refused whole
                future.cancel()
            raise Refused(503, f"the queue is full ({self.max_queue} inputs waiting); retry shortly", {"Retry-After": "1"}) from None
        try:
            done = await asyncio.wait_for(asyncio.gather(*futures), max(0.0, deadline - time.monotonic()))
        except (TimeoutError, Expired):
            for future in futures:
                future.cancel()
            raise timed_out(self.timeout_s) from None
        except InputError as exc:
            raise Refused(400, str(exc)) from exc
        except Exception as exc:  # the model failed on this batch; the server goes on
            raise Refused(500, f"prediction failed: {one_line(exc)}") from exc
        predictor = servable.predictor
        for (index, _), (result, size) in zip(decoded, done):
            file = None
            if want_file and predictor is not None:
                started = time.perf_counter()
                file = predictor.encode(result)
                self.hooks.on_stages([("encode", time.perf_counter() - started)])
            outcomes[index] = Outcome(result=result, file=file, batch_size=size)
        return outcomes

    async def stream(self, raw, *, deadline: float) -> AsyncIterator[dict]:
        """``{"text": piece}`` events as the model makes them, then ``{"result": ...}`` or
        ``{"error": ...}``. The generation runs on the model thread, between batches. A request
        that cannot be read is refused (``Refused``) before the first event."""
        from starlette.concurrency import run_in_threadpool

        servable = self._require()
        try:
            sample = await run_in_threadpool(servable.decode, raw)
        except InputError as exc:
            raise Refused(400, str(exc)) from exc
        return _stream_events(servable.predictor, sample, self.batcher)


async def _stream_events(predictor, sample, batcher: Batcher) -> AsyncIterator[dict]:
    """The stream's events; closed early (the client gone), the generation stops at its next
    token rather than running on to its end for nobody (ptcli.inference.cancellation)."""
    from ptcli.inference import cancellation

    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue = asyncio.Queue()
    abandoned = threading.Event()

    def run() -> None:
        try:
            with cancellation.watching(abandoned.is_set):
                final = {"result": predictor.stream(sample, lambda text: loop.call_soon_threadsafe(pieces.put_nowait, {"text": text}))}
        except Exception as exc:  # the stream has begun (200): the error goes in it, as an event
            final = {"error": str(exc) if isinstance(exc, InputError) else one_line(exc)}
        loop.call_soon_threadsafe(pieces.put_nowait, final)

    job = asyncio.ensure_future(batcher.on_model_thread(run))
    try:
        while True:
            event = await pieces.get()
            yield event
            if "text" not in event:
                break
    finally:
        abandoned.set()  # a no-op once the generation has ended
        await asyncio.shield(job)
