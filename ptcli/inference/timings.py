"""--timings: where one run's wall time went, from the moment the process started (before
Python's own start-up) to its last line: start-up (interpreter, imports, arguments, listing the
inputs), model load, decode, preprocess, forward, postprocess, encode (a video's frames, an
output file) and writing (printing or storing results), and what no stage claimed ("other").

Stages nest: time spent in an inner stage (preprocess run inside the wait for decoded inputs)
counts there and not in the outer one, so the stages add up to the wall time (``Timings``).
They are timed on the thread that started them (the command's); other threads (a video's reader) are seen as
the time this thread waits for them. Under decode workers, "decode" is the time the loop waited
for them, their preprocessing included. Off unless asked: ``stage`` is then a no-op.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

#: (JSON key, words), in the order a run passes through them.
STAGES = (("startup", "start-up"), ("load", "model load"), ("decode", "decode"), ("preprocess", "preprocess"),
          ("forward", "forward"), ("postprocess", "postprocess"), ("encode", "encode"), ("write", "writing"))

_active: Timings | None = None


def process_started() -> float:
    """When this process started, on time.perf_counter()'s clock: from /proc (Linux), which
    counts the interpreter's own start-up; elsewhere, when ptcli was imported."""
    now = time.perf_counter()
    try:
        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time after boot, in ticks
        return now - (time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        import ptcli

        return getattr(ptcli, "IMPORTED_AT", now)


class Timings:
    """Seconds per stage. Exactly one stage (or none: "other") is charged at any moment: entering
    a stage charges the time so far to the one it interrupts, leaving it charges its own and goes
    back to that one. So nested stages never count twice, and a generator that yields inside a
    stage (its consumer's work is "writing") cannot make the whole add up to more than it was."""

    def __init__(self, origin: float, device: Any = None) -> None:
        self.origin, self.device = origin, device
        self.seconds = {key: 0.0 for key, _ in STAGES}
        self.since = time.perf_counter()
        self.seconds["startup"] = self.since - origin
        self.thread = threading.get_ident()
        self.current: str | None = None
        self._interrupted: list[str | None] = []

    def _charge(self) -> float:
        now = time.perf_counter()
        if self.current is not None:
            self.seconds[self.current] += now - self.since
        self.since = now
        return now

    @contextlib.contextmanager
    def stage(self, key: str):
        self._charge()
        self._interrupted.append(self.current)
        self.current = key
        try:
            yield
        finally:
            if key == "forward":
                self._synchronize()
            self._charge()
            self.current = self._interrupted.pop() if self._interrupted else None

    def _synchronize(self) -> None:
        """A GPU computes after forward returns: its time is forward's, not the next stage's."""
        if getattr(self.device, "type", None) == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    def report(self) -> dict[str, float]:
        """Seconds per stage, "other" (what none claimed) and "total" (since the process began)."""
        total = self._charge() - self.origin
        out = {key: round(value, 4) for key, value in self.seconds.items()}
        out["other"] = round(max(0.0, total - sum(self.seconds.values())), 4)
        out["total"] = round(total, 4)
        return out


def begin(device: Any = None) -> Timings:
    """Start timing this run (start-up is everything until now); ``device``: forward waits
    for a GPU to finish."""
    global _active
    _active = Timings(process_started(), device)
    return _active


def end() -> dict[str, float] | None:
    """The report, and timing off; None when it was not on."""
    global _active
    timings, _active = _active, None
    return None if timings is None else timings.report()


def stage(key: str) -> contextlib.AbstractContextManager:
    """A block timed as ``key`` (one of STAGES), when --timings is on and on its thread."""
    timings = _active
    if timings is None or timings.thread != threading.get_ident():
        return contextlib.nullcontext()
    return timings.stage(key)


def timed(key: str, function):
    """``function`` with each call timed as ``key``."""

    def call(*args, **kwargs):
        with stage(key):
            return function(*args, **kwargs)

    return call


@contextlib.contextmanager
def timed_run(wanted: bool, device: Any, json_output: bool):
    """With --timings: the run timed from here (start-up is all before), and where its time
    went said at the end, after every result (also when some inputs failed: typer.Exit): a
    line on stderr, or with --json a last {"timings": {...}} object on stdout."""
    import typer

    from ptcli.output import emit_json, note

    if not wanted:
        yield
        return
    begin(device)

    def say() -> None:
        report = end()
        emit_json({"timings": report}) if json_output else note(format_timings(report))

    try:
        yield
    except typer.Exit:
        say()
        raise
    except BaseException:
        end()
        raise
    say()


def timed_iteration(key: str, items):
    """``items``, each step of the iteration timed as ``key`` (what nests inside keeps its own)."""
    items = iter(items)
    while True:
        with stage(key):
            try:
                item = next(items)
            except StopIteration:
                return
        yield item


def format_timings(report: dict[str, float]) -> str:
    """One line for stderr: each stage that took time, what none claimed and the whole."""
    words = dict(STAGES)
    parts = [f"{words[key]} {report[key]:.2f} s" for key, _ in STAGES if report[key] >= 0.005]
    return f"timings: {', '.join(parts)}, other {report['other']:.2f} s; {report['total']:.2f} s in all"


def _after_fork() -> None:  # a decode worker forked from the loop times nothing of its own
    global _active
    _active = None


os.register_at_fork(after_in_child=_after_fork)
