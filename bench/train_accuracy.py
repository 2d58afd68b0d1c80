"""Validation accuracy of the shipped training recipes on real data, through `ptcli train`:

- imagefolder-transfer.yaml (EfficientNet-Lite0, offline weights) on imagefolder_photos,
  3 epochs: expect >= 0.9;
- imagefolder-simplenet.yaml (SimpleNet, and --cnnnet CNNNet) on imagefolder_digits,
  10 epochs: expect >= 0.85.

    python bench/train_accuracy.py [--data ../shared/data] [--cnnnet]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def train(recipe: str, overrides: list[str]) -> tuple[float, float]:
    command = [sys.executable, "-m", "ptcli", "train", str(REPO / "recipes" / recipe), *overrides, "--json"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"ptcli train failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return summary["metrics"]["val/accuracy"], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--cnnnet", action="store_true", help="also train CNNNet (64 px, about a minute on CPU)")
    args = parser.parse_args()
    photos, digits = args.data / "imagefolder_photos", args.data / "imagefolder_digits"
    for folder in (photos, digits):
        if not folder.is_dir():
            sys.exit(f"benchmark data not found: {folder} (see ../shared/data/README.md)")
    with tempfile.TemporaryDirectory() as runs:
        jobs = [
            ("transfer, EfficientNet-Lite0, photos, 3 epochs", "imagefolder-transfer.yaml",
             [f"data.root={photos}", "trainer.epochs=3"], 0.9),
            ("SimpleNet, digits 32 px, 10 epochs", "imagefolder-simplenet.yaml",
             [f"data.root={digits}", "data.image_size=32", "trainer.epochs=10"], 0.85),
        ]
        if args.cnnnet:
            jobs.append(("CNNNet, digits 64 px, 10 epochs", "imagefolder-simplenet.yaml",
                         [f"data.root={digits}", "model.name=cnnnet", "data.image_size=64", "trainer.epochs=10",
                          "trainer.lr=0.0001"], 0.85))
        for title, recipe, overrides, expected in jobs:
            accuracy, seconds = train(recipe, [*overrides, f"run.dir={runs}", "trainer.device=cpu"])
            print(f"{title}: val accuracy {accuracy:.3f} (expected >= {expected}, ratio {accuracy / expected:.2f}) in {seconds:.0f} s")


if __name__ == "__main__":
    main()
