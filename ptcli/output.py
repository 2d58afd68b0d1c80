"""Where output goes: results on stdout (plain text or one JSON object per line), everything
else (progress, warnings, errors) on stderr, so stdout stays clean for pipes."""

from __future__ import annotations

import json
import sys
from typing import Any

from ptcli.distributed import is_main_process


def emit_json(obj: Any) -> None:
    """One JSON object on one line of stdout, flushed so that consumers see it at once."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def emit(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


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


def progress(transient: bool = True):
    """A rich progress bar on stderr; silent when stderr is not a terminal (logs, CI, pipes)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = stderr_console()
    # Rich would route stdout through its stderr console while the bar is live; only do that
    # when stdout is a terminal too, so that piped results never end up on stderr.
    to_terminal = sys.stdout.isatty()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        # Under torchrun only the main process shows progress (one bar, not one per process).
        disable=not console.is_terminal or not is_main_process(),
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
