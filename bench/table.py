"""The one table of bench/all.sh: every figure the benchmarks recorded (report.record).

    python bench/table.py TABLE.jsonl [DEVICE]
"""

import json
import sys


def main() -> None:
    path, device = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "cpu"
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    head = ("figure", "ours", "baseline", "ratio", "target", "")
    table = [head] + [(r["figure"], r["ours"] or "-", r["baseline"] or "-", "-" if r["ratio"] is None else f"{r['ratio']:.3g}",
                       r["target"], "OK" if r["ok"] else "MISSED") for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    print(f"\nbenchmarks on {device}: {sum(r['ok'] for r in rows)} of {len(rows)} figures met")
    for row in table:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


if __name__ == "__main__":
    main()
