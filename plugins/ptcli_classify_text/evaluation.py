"""The labelled file `ptcli eval` scores a classify-text model on (TextClassifierPredictor.evaluate)."""

from __future__ import annotations

from pathlib import Path

from ptcli.errors import UsageError

_SPLIT_NAMES = ("test", "val")
_SUFFIXES = (".csv", ".tsv", ".jsonl")


def labelled_file(data: Path) -> Path:
    """DATA itself, or in a folder its test file (else its val file)."""
    data = Path(data)
    if data.is_file():
        return data
    if not data.is_dir():
        raise UsageError(f"data not found: {data}")
    for name in _SPLIT_NAMES:
        for suffix in _SUFFIXES:
            if (data / f"{name}{suffix}").is_file():
                return data / f"{name}{suffix}"
    raise UsageError(f"no test or val file (.csv, .tsv, .jsonl) in {data}; name the file itself")
