"""Reading texts and labels from files: plain lines, CSV, TSV, JSON Lines, and Sentiment140's
raw file (no header, latin-1, label in column 0 as 0/2/4, text in column 5)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ptcli.errors import UsageError

FORMATS = ("auto", "lines", "csv", "tsv", "jsonl", "sentiment140")
_BY_SUFFIX = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "lines"}
SENTIMENT140_LABELS = {"0": "negative", "2": "neutral", "4": "positive"}


@dataclass(frozen=True)
class Row:
    line: int
    fields: dict[str, str]


def detect_format(path: Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    return _BY_SUFFIX.get(path.suffix.lower(), "lines")


def _cell(value) -> str:
    return "" if value is None else str(value)


def read_rows(path: Path, fmt: str, encoding: str = "utf-8") -> Iterator[Row]:
    """Every record of a file as named string fields ("text" for plain lines; "label" and
    "text" for Sentiment140). Raises UsageError for a missing file or the wrong encoding."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"text file not found: {path}")
    fmt = detect_format(path, fmt)
    if fmt == "sentiment140":
        encoding = "latin-1"  # the published file is not UTF-8
    try:
        with open(path, encoding=encoding, newline="") as handle:
            yield from _parse(handle, fmt, path)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not {encoding} text (byte {exc.object[exc.start]:#x} at offset {exc.start} of a chunk); "
                         "give its encoding (data.encoding=latin-1, or --encoding latin-1)") from exc
    except LookupError as exc:
        raise UsageError(f"unknown text encoding {encoding!r}") from exc


def _parse(handle, fmt: str, path: Path) -> Iterator[Row]:
    if fmt == "lines":
        for number, line in enumerate(handle, start=1):
            yield Row(number, {"text": line.rstrip("\r\n")})
    elif fmt in ("csv", "tsv"):
        reader = csv.DictReader(handle, delimiter="," if fmt == "csv" else "\t")
        if not reader.fieldnames:
            raise UsageError(f"{path} is empty: a {fmt.upper()} file needs a header row")
        for row in reader:
            yield Row(reader.line_num, {key: _cell(value) for key, value in row.items() if key is not None})
    elif fmt == "jsonl":
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}:{number} is not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise UsageError(f"{path}:{number} is not a JSON object")
            yield Row(number, {key: _cell(value) for key, value in record.items()})
    elif fmt == "sentiment140":
        reader = csv.reader(handle)
        for row in reader:
            if len(row) < 6:
                raise UsageError(f"{path}:{reader.line_num} has {len(row)} columns; Sentiment140 rows have 6")
            yield Row(reader.line_num, {"label": SENTIMENT140_LABELS.get(row[0], row[0]), "text": row[5]})
    else:
        raise UsageError(f"unknown text format {fmt!r}; one of {', '.join(FORMATS)}")


def _column(row: Row, name: str, path: Path) -> str:
    if name not in row.fields:
        raise UsageError(f"no column {name!r} in {path}; its columns: {', '.join(row.fields) or 'none'}")
    return row.fields[name]


def read_texts(path: Path, *, fmt: str = "auto", column: str | None = None, encoding: str = "utf-8") -> list[str]:
    """The texts of a file: every line of a plain text file, or one column of a table."""
    fmt = detect_format(Path(path), fmt)
    if fmt == "lines" and column not in (None, "text"):
        raise UsageError(f"--column needs a CSV, TSV or JSONL file; {path} is read as plain lines (one text each)")
    name = column or "text"
    return [_column(row, name, Path(path)) for row in read_rows(path, fmt, encoding)]


def read_labelled(path: Path, *, fmt: str = "auto", text_column: str = "text", label_column: str = "label",
                  encoding: str = "utf-8") -> tuple[list[str], list[str], int]:
    """(texts, labels, rows skipped because their text was empty) of a labelled table."""
    path = Path(path)
    fmt = detect_format(path, fmt)
    if fmt == "lines":
        raise UsageError(f"{path} has no label column: labelled data must be CSV, TSV, JSONL or sentiment140 "
                         "(set data.format)")
    if fmt == "sentiment140":
        text_column, label_column = "text", "label"
    texts, labels, empty = [], [], 0
    for row in read_rows(path, fmt, encoding):
        text, label = _column(row, text_column, path), _column(row, label_column, path).strip()
        if not label:
            raise UsageError(f"{path}:{row.line}: empty label in column {label_column!r}")
        if not text.strip():
            empty += 1
            continue
        texts.append(text)
        labels.append(label)
    if not texts:
        raise UsageError(f"no labelled texts in {path}")
    return texts, labels, empty
