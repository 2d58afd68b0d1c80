"""How every benchmark prints its result: the measured figures, then the ratio and its target.
With PTCLI_BENCH_TABLE=FILE (bench/all.sh sets it), each figure is also appended to FILE as a
JSON line, for the one table all.sh prints."""

import json
import os
import sys
from pathlib import Path


def record(figure: str, ours: str, baseline: str, ratio: float | None, target: str, ok: bool) -> None:
    """One figure for all.sh's table (nothing without PTCLI_BENCH_TABLE)."""
    table = os.environ.get("PTCLI_BENCH_TABLE")
    if not table:
        return
    row = {"bench": Path(sys.argv[0]).stem, "figure": figure, "ours": ours, "baseline": baseline,
           "ratio": None if ratio is None else round(ratio, 3), "target": target, "ok": ok}
    with open(table, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")


def report(rows: list[tuple[str, str]], ratio: float, target: float, higher_is_better: bool = True, *,
           figure: str | None = None, ours: str = "", baseline: str = "") -> None:
    """Print ``label  value`` rows aligned, then ``ratio R (target >= T): OK|MISSED``."""
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    met = ratio >= target if higher_is_better else ratio <= target
    print(f"ratio {ratio:.3g} (target {'>=' if higher_is_better else '<='} {target}): {'OK' if met else 'MISSED'}")
    record(figure or Path(sys.argv[0]).stem.replace("_", " "), ours, baseline, ratio,
           f"{'>=' if higher_is_better else '<='} {target}", met)
