"""--results PATH_OR_URL: a command's results written in parts, each committed whole (a local
file renamed into place; an object stored by one PUT), so that a run killed at any moment
(kill -9, a preempted machine, Ctrl-C) and started again with the same command runs only what
no committed part holds, and ends with the results an uninterrupted run gives.

Layout. The inputs, in the command's order (images, then videos; each input once), are cut
into parts of ``part_size`` consecutive inputs. ``DIR/`` (a folder or an object prefix) holds
``_ptcli_results.json`` (what the results are of: the command, model, options, inputs, format),
``part-NNNNNN-ROWS-FAILED.jsonl`` (or ``.parquet``) for each committed part, and ``_SUCCESS``
when all are. ``out.jsonl`` (or ``out.parquet``) is one file: its parts live beside it in
``.out.jsonl.parts/`` while the run goes on, and are joined into it (atomically) at the end.
A row is the command's --json object: the input's key and its result's fields, or "error".
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptcli.errors import PtcliError, UsageError
from ptcli.storage import one_line

MANIFEST = "_ptcli_results.json"
SUCCESS = "_SUCCESS"
FORMATS = ("jsonl", "parquet")
_PART = re.compile(r"part-(\d{6})-(\d+)-(\d+)\.(jsonl|parquet)$")


def part_size_for(count: int) -> int:
    """Inputs a part: about a hundred parts a run, 16 to 4096 inputs each."""
    return max(16, min(4096, math.ceil(count / 100)))


@dataclass
class Part:
    index: int
    rows: int
    failed: int
    name: str


@dataclass
class ResultsStore:
    """Where one command's results go (``target``: a path or URL), and what is there already."""

    target: str
    overwrite: bool = False
    #: One file (joined at the end) rather than a folder of parts; jsonl or parquet.
    single: bool = field(init=False)
    format: str = field(init=False)

    def __post_init__(self) -> None:
        from ptcli.storage import filesystem

        text = str(self.target)
        ending = Path(text.rstrip("/")).suffix.lower().lstrip(".")
        self.single = not text.endswith("/") and ending in FORMATS
        self.format = ending if ending in FORMATS else "jsonl"  # a folder named x.parquet/ holds Parquet parts
        if self.format == "parquet":
            from importlib.util import find_spec

            if find_spec("pyarrow") is None:
                raise UsageError("--results in Parquet needs pyarrow: pip install 'ptcli[parquet]'")
        self.fs, path = filesystem(text)
        self.fs.invalidate_cache()  # fsspec keeps listings per process: another process wrote since
        self.path = path.rstrip("/") or path
        if self.single:
            parent, name = self.path.rsplit("/", 1) if "/" in self.path else ("", self.path)
            self.parts_root = f"{parent}/.{name}.parts" if parent else f".{name}.parts"
        else:
            self.parts_root = self.path
        self.local = _is_local(self.fs)

    # --- starting -------------------------------------------------------------------------

    def open(self, identity: dict) -> dict[int, Part]:
        """The parts committed by an earlier run of this same command (none on a fresh start
        or with --overwrite). Results of another command there are a usage error saying what
        differs; a folder holding other files, or a finished single file, is refused."""
        from ptcli.storage import store_errors

        try:
            return self._open(identity)
        except store_errors() as exc:
            raise UsageError(f"--results {self.target} cannot be used: {one_line(exc)}") from None

    def _open(self, identity: dict) -> dict[int, Part]:
        fs = self.fs
        if self.overwrite:
            for path in (self.parts_root, *([self.path] if self.single else [])):
                if fs.exists(path):
                    fs.rm(path, recursive=True)
        self._drop_stale_temporaries()
        manifest_path = f"{self.parts_root}/{MANIFEST}"
        if self.single and fs.exists(self.path) and not fs.exists(manifest_path):
            raise UsageError(f"--results {self.target} exists; pass --overwrite to replace it")
        if fs.exists(manifest_path):
            with fs.open(manifest_path, "rb") as handle:
                there = _manifest(handle.read(1 << 20), self.target)
            differences = _differences(there, identity)
            if differences:
                raise UsageError(f"--results {self.target} holds the results of another command ({'; '.join(differences)}); "
                                 "pass --overwrite to start over, or give another --results")
            return self.committed()
        if not self.single and fs.exists(self.path) and fs.ls(self.path, detail=False):
            raise UsageError(f"--results {self.target} holds other files; give a new or empty folder, or a .jsonl file")
        self._put(manifest_path, json.dumps(identity, indent=1, sort_keys=True).encode())
        return {}

    def _drop_stale_temporaries(self) -> None:
        """A run killed while writing a part leaves its temporary file (a local folder only: an
        object store never shows a half-written object)."""
        root = Path(self.parts_root)
        if self.local and root.is_dir():
            for stale in root.glob(".*.tmp"):
                stale.unlink(missing_ok=True)

    def committed(self) -> dict[int, Part]:
        found: dict[int, Part] = {}
        if not self.fs.exists(self.parts_root):
            return found
        for path in self.fs.ls(self.parts_root, detail=False):
            match = _PART.search(str(path).rsplit("/", 1)[-1])
            if match and match.group(4) == self.format:
                index, rows, failed = (int(match.group(i)) for i in (1, 2, 3))
                found[index] = Part(index, rows, failed, str(path).rsplit("/", 1)[-1])
        return found

    # --- writing --------------------------------------------------------------------------

    def commit(self, index: int, rows: list[dict]) -> Part:
        """One part, whole: written under a temporary name and renamed (a local file), or
        stored by one PUT (an object)."""
        from ptcli.storage import store_errors

        failed = sum("error" in row for row in rows)
        name = f"part-{index:06d}-{len(rows)}-{failed}.{self.format}"
        try:
            self._put(f"{self.parts_root}/{name}", encode(rows, self.format))
        except store_errors() as exc:
            raise PtcliError(f"could not write part {index} of --results {self.target}: {one_line(exc)}; the parts "
                             "before it are kept: run the same command again to go on") from None
        return Part(index, len(rows), failed, name)

    def finish(self, parts: dict[int, Part]) -> None:
        """All parts are there: a folder gets _SUCCESS; a single file is joined from them (and
        its parts folder removed after)."""
        from ptcli.storage import store_errors

        try:
            if not self.single:
                self._put(f"{self.parts_root}/{SUCCESS}", b"")
                return
            pieces = []
            for index in sorted(parts):
                with self.fs.open(f"{self.parts_root}/{parts[index].name}", "rb") as handle:
                    pieces.append(handle.read())
            self._put(self.path, join(pieces, self.format))
            self.fs.rm(self.parts_root, recursive=True)
        except store_errors() as exc:
            raise PtcliError(f"could not finish --results {self.target}: {one_line(exc)}; run the same command again") from None

    def _put(self, path: str, data: bytes) -> None:
        if self.local:
            from ptcli.files import atomic_write

            atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(data))
        else:
            self.fs.pipe_file(path, data)


def _is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")



def _manifest(data: bytes, target: str) -> dict:
    """An earlier run's manifest (untrusted: whatever the folder or bucket holds), or a usage error."""
    try:
        there = json.loads(data)
    except (ValueError, RecursionError):
        there = None
    if not isinstance(there, dict) or there.get("ptcli_results") != 1:
        raise UsageError(f"--results {target} holds a {MANIFEST} that is not ptcli's; pass --overwrite to replace it")
    return there


def _differences(there: dict, here: dict) -> list[str]:
    said = []
    for key in sorted(set(there) | set(here)):
        a, b = there.get(key), here.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            said += [f"{key}.{name} {_short(a.get(name))} there, {_short(b.get(name))} here"
                     for name in sorted(set(a) | set(b)) if a.get(name) != b.get(name)]
        elif key == "inputs_sha256":
            if there.get("inputs") == here.get("inputs"):
                said.append("other inputs")
        else:
            said.append(f"{key} {_short(a)} there, {_short(b)} here")
    return said


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def encode(rows: list[dict], fmt: str) -> bytes:
    if fmt == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(dict.fromkeys(key for row in rows for key in row))  # every row's fields (Arrow reads the first row's)
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{key: row.get(key) for key in columns} for row in rows]), buffer)
    return buffer.getvalue()


def join(pieces: list[bytes], fmt: str) -> bytes:
    if fmt == "jsonl":
        return b"".join(pieces)
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(io.BytesIO(piece)) for piece in pieces if piece]
    buffer = io.BytesIO()
    pq.write_table(pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({}), buffer)
    return buffer.getvalue()


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Plan:
    """What a resumed run still has to do: the inputs of the parts not committed."""

    units: list
    part_size: int
    committed: dict[int, Part]

    def pending(self) -> list:
        return [unit for index, unit in enumerate(self.units) if index // self.part_size not in self.committed]

    @property
    def parts(self) -> int:
        return math.ceil(len(self.units) / self.part_size)

    @property
    def resumed(self) -> int:
        return sum(min(self.part_size, len(self.units) - index * self.part_size) for index in self.committed)


def write_results(store: ResultsStore, plan: Plan, results: Iterator[tuple[Any, Any]], row_of) -> dict:
    """The (input, result) pairs of the pending inputs, in order, committed part by part;
    returns the run's counts. ``row_of(item, result)`` is (the input's name, the row: the
    --json object); a video's frames all name their video."""
    index_of: dict[str, int] = {}
    for index, unit in enumerate(plan.units):
        index_of.setdefault(str(unit), index)
    writer = _PartWriter(store, plan.part_size, dict(plan.committed))
    log = _ProgressLog(len(plan.units), plan.resumed)
    last_unit = None
    try:
        for item, result in results:
            name, row = row_of(item, result)
            unit = index_of.get(name)
            if unit is None:
                raise PtcliError(f"a result for an input the run was not given: {name[:80]!r}")
            if unit != last_unit:
                log.advance()
                last_unit = unit
            writer.add(unit // plan.part_size, row)
    except KeyboardInterrupt:
        done = sum(min(plan.part_size, len(plan.units) - index * plan.part_size) for index in writer.parts)
        log.say(f"interrupted with {done} of {len(plan.units)} inputs committed to {store.target}; "
                "the same command goes on from there")
        raise
    writer.close_through(plan.parts)
    store.finish(writer.parts)
    parts = writer.parts.values()
    return {"results": str(store.target), "inputs": len(plan.units), "rows": sum(p.rows for p in parts),
            "resumed": plan.resumed, "failed": sum(p.failed for p in parts)}


class _PartWriter:
    """Rows gathered for the part being filled, committed when the results move past it."""

    def __init__(self, store: ResultsStore, part_size: int, parts: dict[int, Part]) -> None:
        self.store, self.part_size, self.parts = store, part_size, parts
        self.current: int | None = None
        self.rows: list[dict] = []

    def add(self, part: int, row: dict) -> None:
        if part != self.current:
            self.close_through(part)
            self.current = part
        self.rows.append(row)

    def close_through(self, last: int) -> None:
        """Commit the part being filled and any pending part before ``last`` (their inputs gave
        no rows: a video with no frames in --start..--end)."""
        for index in range(self.current if self.current is not None else 0, last):
            if index not in self.parts:
                self.parts[index] = self.store.commit(index, self.rows if index == self.current else [])
        self.current, self.rows = None, []


class _ProgressLog:
    """done/total with the rate on stderr: a line every 5 s (or a tenth of the run), counting
    the inputs an earlier run committed as done."""

    def __init__(self, total: int, resumed: int) -> None:
        self.total, self.done, self.resumed = total, resumed, resumed
        self.started: float | None = None  # at the first result: a cluster's actors take a while to start
        self.said = time.monotonic()
        self.step = max(1, total // 10)
        self.quiet = sys.stderr.isatty()  # the progress bar speaks there
        if resumed:
            self.say(f"resuming: {resumed} of {total} inputs are in committed parts")

    def advance(self) -> None:
        self.done += 1
        now = time.monotonic()
        if self.started is None:
            self.started = now
            return
        if now - self.said >= 5 or (self.done - self.resumed) % self.step == 0:
            self.said = now
            rate = (self.done - self.resumed - 1) / max(now - self.started, 1e-9)
            if not self.quiet:
                self.say(f"{self.done}/{self.total} inputs ({self.resumed} resumed), {rate:.1f}/s")

    @staticmethod
    def say(text: str) -> None:
        from ptcli.distributed import is_main_process

        if is_main_process():
            sys.stderr.write(f"results: {text}\n")
            sys.stderr.flush()
