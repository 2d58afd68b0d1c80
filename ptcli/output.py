"""Where output goes: results on stdout (plain text or one JSON object per line), everything
else (progress, warnings, errors) on stderr, so stdout stays clean for pipes."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from typing import Any

from ptcli.distributed import is_main_process


def emit_json(obj: Any) -> None:
    """One JSON object on one line of stdout, flushed so that consumers see it at once."""
    _print(json.dumps(obj, ensure_ascii=False) + "\n")


def emit(text: str = "") -> None:
    _print(text + "\n")


#: How many runs in this process are writing files besides stdout (see files_under_way).
_FILES_UNDER_WAY = [0]


@contextmanager
def files_under_way():
    """While a run writes files the user asked for (-o, --mot), a reader that closes stdout
    early (`--json | head -1`) ends only the printing: the files are finished, not cut short.
    Without such files the BrokenPipeError ends the run (ptcli.cli.app.main: quietly)."""
    _FILES_UNDER_WAY[0] += 1
    try:
        yield
    finally:
        _FILES_UNDER_WAY[0] -= 1


def _print(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        if not _FILES_UNDER_WAY[0]:
            raise
        stdout_to_nowhere()
        if is_main_process():
            sys.stderr.write("note: stdout was closed by its reader; the files go on being written\n")


def stdout_to_nowhere() -> None:
    """After the reader closed stdout (`| head -1`): what is still buffered and everything
    printed from now on goes to /dev/null, so that no later flush fails again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def note(message: str) -> None:
    """A line about work under way (loading, connecting) on stderr, from the main process only,
    so that a step of several seconds is never silent, in a terminal or in a log."""
    if is_main_process():
        sys.stderr.write(f"{message}\n")
        sys.stderr.flush()


def error_line(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def progress_seconds() -> float:
    """The longest that long work stays silent on stderr: PTCLI_PROGRESS_SECONDS (default 5);
    0 turns the lines off (a terminal's bars stay)."""
    raw = os.environ.get("PTCLI_PROGRESS_SECONDS", "").strip()
    if not raw:
        return 5.0
    try:
        return max(0.0, float(raw))
    except ValueError:
        from ptcli.errors import UsageError

        raise UsageError(f"PTCLI_PROGRESS_SECONDS={raw!r} is not a number of seconds (0 turns progress lines off)") from None


class _Heartbeat:
    """Calls ``lines(elapsed seconds)`` and writes what it returns to stderr, first after two
    fifths of ``every`` seconds (a quick step says nothing) and then every ``every``, from a
    thread, until the block ends; in the main process only (one voice under torchrun)."""

    def __init__(self, lines, *, every: float) -> None:
        import threading

        self.lines, self.every = lines, every
        self.first = 0.4 * every
        self.stopped = threading.Event()
        self.thread = None

    def __enter__(self):
        import threading

        if self.every > 0 and is_main_process():
            self.thread = threading.Thread(target=self._run, name="ptcli-progress", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()

    def _run(self) -> None:
        import time

        started, wait = time.monotonic(), self.first
        while not self.stopped.wait(wait):
            try:
                said = self.lines(time.monotonic() - started)
                if said:
                    sys.stderr.write("".join(f"{line}\n" for line in said))
                    sys.stderr.flush()
            except (OSError, ValueError):  # stderr closed under us: nothing to say it to
                return
            wait = self.every


@contextmanager
def working(text: str):
    """A step that has no count (loading a model, an export step, connecting): said on stderr
    with its time so far once it has taken two fifths of PTCLI_PROGRESS_SECONDS, and again
    every PTCLI_PROGRESS_SECONDS, so that it is never silent; a quick step says nothing."""
    with _Heartbeat(lambda elapsed: [f"{text} ... ({elapsed:.0f} s)"], every=progress_seconds()):
        yield


class Stages:
    """The steps of one piece of work (an export, a benchmark): each said as "NAME: step" when
    it starts (not with ``quiet``: --json), and, in a ``with`` block, said again with its time
    so far every PTCLI_PROGRESS_SECONDS while it lasts, --json or not."""

    def __init__(self, name: str, *, quiet: bool = False) -> None:
        self.name, self.quiet = name, quiet
        self.current, self.started = None, 0.0
        self.heartbeat = _Heartbeat(self._still, every=progress_seconds())

    def __call__(self, text: str) -> None:
        import time

        self.current, self.started = text, time.monotonic()
        if not self.quiet and is_main_process():
            sys.stderr.write(f"{self.name}: {text}\n")
            sys.stderr.flush()

    def _still(self, _elapsed: float) -> list[str]:
        import time

        current = self.current
        return [f"{self.name}: {current} ... ({time.monotonic() - self.started:.0f} s)"] if current else []

    def __enter__(self):
        self.heartbeat.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.heartbeat.__exit__(*exc)


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "?"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def progress_line(task) -> str:
    """A rich progress task as one line: its description, count, rate and time left (or what
    its ``line`` field, a function of the task, says)."""
    if callable(task.fields.get("line")):
        return task.fields["line"](task)
    return counted_line(task)


def counted_line(task) -> str:
    """A rich progress task's count, rate and time left, as ``progress_line`` says them."""
    count = f"{task.completed:g}/{task.total:g}" if task.total is not None else f"{task.completed:g}"
    rate = f", {task.speed:.2f}/s, about {_duration(task.time_remaining)} left" if task.speed else ""
    return f"{task.description}: {count}{rate} ({_duration(task.elapsed)} so far)"


def progress(transient: bool = True):
    """Progress on stderr: a rich bar in a terminal; elsewhere (logs, CI, pipes) a line per
    running task every PTCLI_PROGRESS_SECONDS, with its count, rate and time left."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    class LoggedProgress(Progress):
        def start(self) -> None:
            super().start()
            self.heartbeat = _Heartbeat(self._lines, every=progress_seconds()).__enter__()

        def stop(self) -> None:
            beat = getattr(self, "heartbeat", None)
            if beat is not None:
                beat.__exit__(None, None, None)
            super().stop()

        def _lines(self, _elapsed: float) -> list[str]:
            with self._lock:
                running = [task for task in self.tasks if task.visible and not task.finished]
            return [progress_line(task) for task in running]

    console = stderr_console()
    # Rich would route stdout through its stderr console while the bar is live; only do that
    # when stdout is a terminal too, so that piped results never end up on stderr.
    to_terminal = sys.stdout.isatty()
    drawn = console.is_terminal and is_main_process()
    return (Progress if drawn else LoggedProgress)(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        # Under torchrun only the main process shows progress (one bar, not one per process).
        disable=not drawn,
        redirect_stdout=to_terminal,
        redirect_stderr=False,
    )


def format_predictions(title: str, predictions: list[dict]) -> str:
    """A classifier's top-k for one input: the input's name, then ``label  score%`` lines."""
    width = max(len(p["label"]) for p in predictions)
    return "\n".join([title] + [f"  {p['label']:<{width}}  {p['score'] * 100:5.1f}%" for p in predictions])


class StageLog:
    """When stderr is not a terminal (logs, CI), where a bar would be silent: one line per stage
    and one per tenth of the steps, so that a long run is never mute."""

    def __init__(self, name: str, steps: int) -> None:
        self.name, self.steps, self.done = name, steps, 0
        self.quiet = sys.stderr.isatty()  # the progress bar speaks there

    def stage(self, text: str) -> None:
        if not self.quiet:
            sys.stderr.write(f"{self.name}: {text}\n")
            sys.stderr.flush()

    def step(self, text: str) -> None:
        self.done += 1
        if self.done % max(1, self.steps // 10) == 0 or self.done == self.steps:
            self.stage(f"{self.done}/{self.steps}  {text}")
