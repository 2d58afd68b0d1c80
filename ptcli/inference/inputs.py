"""Turning command-line PATH arguments (files, folders, globs) into a list of input files."""

from __future__ import annotations

import glob
from collections.abc import Iterable, Sequence
from pathlib import Path

from ptcli.errors import InputError, UsageError
from ptcli.storage import GLOB_CHARS



def _files_under(folder: Path, extensions: Iterable[str]) -> list[Path]:
    """Files under ``folder`` (symbolic links to folders are not followed, so a link loop is
    harmless); a folder that cannot be listed is a usage error naming it."""
    wanted = {e.lower() for e in extensions}
    try:
        return sorted(p for p in folder.rglob("*") if p.suffix.lower() in wanted and p.is_file())
    except OSError as exc:
        raise UsageError(f"cannot list {exc.filename or folder}: {exc.strerror or exc}") from exc


def expand_inputs(arguments: Sequence[str], extensions: Iterable[str]) -> list[Path | str]:
    """Files as named (whatever their ending: a file named explicitly is read and may fail on
    its own), folders searched recursively for ``extensions``, globs expanded; URLs of object
    storage (s3://, gs://, ...) likewise, as URLs (ptcli.storage). A path that matches nothing
    is a usage error, raised before any work starts. Inputs from --inputs-from (a Listed) are
    taken as written."""
    from ptcli.storage import expand_url, is_url

    extensions = tuple(extensions)
    found: list[Path | str] = []
    for argument in arguments:
        if isinstance(argument, Listed):
            found.append(argument.value)
            continue
        if is_url(argument):
            found += expand_url(argument, extensions)
            continue
        path = Path(argument).expanduser()
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            under = _files_under(path, extensions)
            if not under:
                raise UsageError(f"no {'/'.join(extensions)} files under {argument}")
            found += under
        elif GLOB_CHARS & set(argument):
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            files = [m for m in matches if m.is_file()] + [f for m in matches if m.is_dir() for f in _files_under(m, extensions)]
            if not files:
                raise UsageError(f"no files match {argument}")
            found += files
        else:
            raise UsageError(f"no such file or folder: {argument}")
    return found


class Listed(str):
    """An input read from --inputs-from: a path or URL taken as written (not searched, not
    checked before the run: one that cannot be read fails on its own)."""

    @property
    def value(self) -> Path | str:
        from ptcli.storage import is_url

        return str(self) if is_url(str(self)) else Path(str(self))


def read_input_list(path: Path) -> list[Listed]:
    """--inputs-from FILE: one path or URL a line; blank lines and lines starting with # are
    skipped. Read as UTF-8."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = [line.strip() for line in handle]
    except FileNotFoundError:
        raise UsageError(f"--inputs-from {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--inputs-from {path} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    listed = [Listed(line) for line in lines if line and not line.startswith("#")]
    if not listed:
        raise UsageError(f"--inputs-from {path} lists no inputs")
    return listed


def refuse_existing(destination: Path, overwrite: bool) -> Path:
    """An output file that is there already is an error for that input, unless ``overwrite``."""
    if destination.exists() and not overwrite:
        raise InputError(f"{destination} exists; pass --overwrite to replace it")
    return destination


def output_folder(output: Path, what: str = "the results", *, flag: str = "-o") -> Path:
    """-o DIR: a folder (created when results are written). Its nearest existing folder is probed
    now, so that one that cannot be written is a usage error before any model loads or computes;
    an existing file is a usage error too."""
    import tempfile

    if output.exists() and not output.is_dir():
        raise UsageError(f"{flag} {output} is a file; {flag} names a folder for {what} (created if needed)")
    existing = output.absolute()
    while not existing.exists():
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, f"{existing} is a file")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise UsageError(f"{flag} {output} cannot be written ({reason}); choose a folder you can write to for {what}") from None
    return output


#: How long a text is shown in a line of human output.
PREVIEW = 70


def preview(text: str) -> str:
    """A text on one line, cut to PREVIEW characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW else flat[: PREVIEW - 3] + "..."


def read_stdin_as(encoding: str) -> None:
    """Standard input decoded as ``encoding`` (--encoding), where it is not UTF-8."""
    import sys

    if encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        sys.stdin.reconfigure(encoding=encoding)


def gather_texts(texts: list[str] | None, file: Path | None, column: str | None, encoding: str,
                 command: str = "") -> list[str]:
    """Texts from the arguments (``-`` reads standard input, one text per line) or a file."""
    import sys

    from ptcli.inference.textfiles import read_texts

    texts = list(texts or [])
    if file is not None:
        if texts:
            raise UsageError("give texts as arguments or with --file, not both")
        found = read_texts(file, column=column, encoding=encoding)
        if not found:
            raise UsageError(f"{file} holds no texts; give a file with one text per line (or a --column of a table)")
        return found
    if column is not None:
        raise UsageError("--column needs --file")
    gathered: list[str] = []
    for text in texts:
        if text == "-":
            try:
                gathered += [check_decoded(line.rstrip("\r\n"), encoding) for line in sys.stdin]
            except UnicodeDecodeError as exc:
                raise UsageError(f"standard input is not {encoding} text; give its encoding with --encoding") from exc
        else:
            gathered.append(text)
    if not gathered:
        raise UsageError(f"give at least one text, - for standard input, or --file FILE (see `ptcli {command} --help`)")
    return gathered


def check_decoded(text: str, encoding: str) -> str:
    """Standard input decoded with surrogateescape (Python's choice under a C or POSIX locale)
    turns bytes that are not text into lone surrogates, which tokenizers reject with a
    TypeError: say what is wrong instead."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnicodeDecodeError(encoding, b"", 0, 1, "not text") from exc
    return text
