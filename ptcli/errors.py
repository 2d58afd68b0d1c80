"""The project's exceptions. The CLI turns each into one line and an exit code, in one place."""


class PtcliError(Exception):
    """A failure the user can act on. Subclasses set the exit code."""

    exit_code = 1


class UsageError(PtcliError):
    """The command asked for something that cannot be: a missing file, an unknown model, a device
    that is not there, a checkpoint from another recipe."""

    exit_code = 2


class InputError(PtcliError):
    """One input could not be read. Batch commands report it for that input and go on."""


class WeightsUnavailable(PtcliError):
    """Weights are neither given, packaged, cached nor downloadable."""


class CheckpointError(PtcliError):
    """A checkpoint or weights file is broken or not in a loadable form."""


class PluginError(PtcliError):
    """A plugin failed to load (fatal only with PTCLI_STRICT_PLUGINS=1, or when its command runs)."""


def flatten(text: object, limit: int | None = None) -> str:
    """Text on one line (runs of whitespace and newlines become one space), optionally cut."""
    flat = " ".join(str(text).split())
    return flat[:limit] if limit else flat


def without_worker_traceback(message: str) -> str:
    """The original message of an error a DataLoader worker raised: torch re-raises it in the
    main process with the worker's whole traceback folded into the message."""
    if "Original Traceback" not in message:
        return message
    last = message.rstrip().splitlines()[-1]  # "package.module.ErrorType: the message"
    _, sep, original = last.partition(": ")
    return original if sep else last


def one_line(exc: BaseException) -> str:
    """A short, single-line description of an exception, for status tables and JSON."""
    text = flatten(exc)
    name = type(exc).__name__
    if isinstance(exc, PtcliError):
        return text or name
    return f"{name}: {text}" if text else name


class StoreUnavailable(PtcliError):
    """Object storage that does not answer (refused, timed out, lost credentials): not one
    input's fault, so the run stops, with what it committed kept (--results)."""


class Interrupted(PtcliError):
    """The user pressed Ctrl-C; whatever could be saved was saved."""

    exit_code = 130


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `kill`, a container stopping): raised where Ctrl-C would be, so that the same
    clean-up runs (half-written files removed, a run's state saved), then exit 143."""
