"""`ptcli --help` wall time against `python -c "import torch"` (target ratio <= 0.15).

Run with the Python of the environment ptcli is installed in: python bench/startup.py [--runs N]
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from report import report

TARGET = 0.15


def median_seconds(command: list[str], runs: int) -> float:
    subprocess.run(command, check=True, capture_output=True)  # warm the file cache and .pyc files
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def installed_ptcli() -> str:
    """The ptcli script next to this Python (the venv's), else the first on PATH."""
    ptcli = shutil.which("ptcli", path=str(Path(sys.executable).parent)) or shutil.which("ptcli")
    if ptcli is None:
        sys.exit("ptcli is not installed next to this Python; run it with the venv's python")
    return ptcli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    ptcli = installed_ptcli()
    help_s = median_seconds([ptcli, "--help"], args.runs)
    torch_s = median_seconds([sys.executable, "-c", "import torch"], args.runs)
    report([("ptcli --help", f"{help_s * 1000:5.0f} ms (median of {args.runs})"),
            ("python -c 'import torch'", f"{torch_s * 1000:5.0f} ms (median of {args.runs})")],
           help_s / torch_s, TARGET, higher_is_better=False, figure="ptcli --help / import torch",
           ours=f"{help_s * 1000:.0f} ms", baseline=f"{torch_s * 1000:.0f} ms")


if __name__ == "__main__":
    main()
