"""Object storage (and any other fsspec file system) for inputs and results: ``s3://``,
``gs://``, ``az://``... through fsspec, whose per-store packages are extras (s3fs, gcsfs,
adlfs). Credentials come from each library's usual environment and config files (AWS_*,
~/.aws, GOOGLE_APPLICATION_CREDENTIALS, ...), never from the command line. Local paths stay
local paths; http(s), rtsp and the like are video streams (ptcli.video.sources), not storage.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ptcli.errors import InputError, StoreUnavailable, UsageError

#: The extra that brings each store's fsspec package.
EXTRAS = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"),
          "az": ("adlfs", "azure"), "abfs": ("adlfs", "azure"), "abfss": ("adlfs", "azure")}
#: Schemes that are never storage here: streams a video reader opens.
_STREAMS = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
#: What makes an argument a glob (local or in a store).
GLOB_CHARS = set("*?[")


def scheme(text: str) -> str | None:
    """The storage scheme of ``text`` ("s3"), or None for a local path or a stream."""
    head, sep, _ = str(text).partition("://")
    if not sep or not head.replace("+", "").isalnum() or head.lower() in _STREAMS:
        return None
    return head.lower()


def is_url(text) -> bool:
    return isinstance(text, str) and scheme(text) is not None


def max_input_bytes() -> int:
    """The most bytes one input read from storage may take (PTCLI_MAX_INPUT_MB, default 256)."""
    try:
        return int(float(os.environ.get("PTCLI_MAX_INPUT_MB", "256")) * 2**20)
    except ValueError:
        raise UsageError("PTCLI_MAX_INPUT_MB must be a number of megabytes") from None


def filesystem(url: str):
    """(fsspec file system, path inside it) for ``url``; a store whose package is missing is one
    line naming the extra."""
    import fsspec

    name = scheme(url) or "file"
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError:
        package, extra = EXTRAS.get(name, (None, None))
        hint = f"pip install 'ptcli[{extra}]' (or {package})" if package else "install its fsspec package"
        raise UsageError(f"{name}:// needs {package or 'a file system package'}: {hint}") from None
    except ValueError as exc:
        if "Protocol not known" in str(exc):
            raise UsageError(f"unknown storage scheme {name}:// in {url}") from None
        raise


def _url(fs, path: str) -> str:
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    return f"{protocol}://{path.lstrip('/') if protocol != 'file' else path}"


def expand_url(argument: str, extensions: Iterable[str]) -> list[str]:
    """A URL as inputs: a glob (``s3://bucket/photos/**/*.jpg``), a prefix searched for
    ``extensions``, or one object; sorted. Matching nothing is a usage error."""
    wanted = {e.lower() for e in extensions}
    fs, path = filesystem(argument)
    fs.invalidate_cache()  # listings are cached per process; the store may have changed since
    try:
        if GLOB_CHARS & set(path):
            found = sorted(p for p, info in fs.glob(path, detail=True).items() if info.get("type") != "directory")
        elif fs.isdir(path):
            found = sorted(p for p in fs.find(path) if os.path.splitext(p)[1].lower() in wanted)
            if not found:
                raise UsageError(f"no {'/'.join(sorted(wanted))} files under {argument}")
        elif fs.isfile(path):
            found = [path]
        else:
            raise UsageError(f"no such object or prefix: {argument}")
    except store_errors() as exc:
        raise UsageError(f"cannot list {argument}: {one_line(exc)}") from None
    if not found:
        raise UsageError(f"no objects match {argument}")
    return [_url(fs, p) for p in found]


def read_bytes(url: str) -> bytes:
    """One input's bytes, held to max_input_bytes (its size asked first, then counted while
    reading); a missing or unreadable object is that input's InputError."""
    limit = max_input_bytes()
    fs, path = filesystem(url)
    try:
        with fs.open(path, "rb") as handle:
            size = getattr(handle, "size", None)  # known from opening it (S3's HEAD): asked before reading
            if size is not None and size > limit:
                raise InputError(f"{url} is {size / 2**20:.0f} MiB, over PTCLI_MAX_INPUT_MB ({limit / 2**20:.0f} MiB)")
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise InputError(f"no such object: {url}") from None
    except PermissionError as exc:
        raise InputError(f"cannot read {url}: {one_line(exc)}") from None
    except store_errors() as exc:
        raise StoreUnavailable(f"cannot read {url}: {one_line(exc)}; the store did not answer: run the same command "
                               "again when it does") from None
    if len(data) > limit:
        raise InputError(f"{url} is over PTCLI_MAX_INPUT_MB ({limit / 2**20:.0f} MiB)")
    return data


def store_errors() -> tuple[type[BaseException], ...]:
    """What a store raises when it fails: OSError (fsspec's translation of most errors), and the
    errors botocore raises untranslated (a refused connection, a timeout) when it is there."""
    try:
        from botocore.exceptions import BotoCoreError
    except ImportError:
        return (OSError,)
    return (OSError, BotoCoreError)


def one_line(exc: BaseException) -> str:
    from ptcli.errors import flatten

    return flatten(exc, 200)
