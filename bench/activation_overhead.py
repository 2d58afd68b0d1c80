"""The cost of activation statistics (trainer.log_activations: 50) on training time: CNNNet
(the book's, ch. 3) on ../shared/data/imagefolder_photos, the same run with and without it,
each the fastest of --rounds (on a shared 2-core machine one run differs from the next by up
to 15%, more than the hooks cost). Goal: under 10% slower (ratio <= 1.10).

    python bench/activation_overhead.py [--data ../shared/data/imagefolder_photos] [--epochs 3]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from report import report

REPO = Path(__file__).resolve().parents[1]
TARGET = 1.10


def train_seconds(data: Path, epochs: int, extra: list[str], device: str) -> float:
    with tempfile.TemporaryDirectory() as runs:
        done = subprocess.run([sys.executable, "-m", "ptcli", "train", str(REPO / "recipes" / "imagefolder-simplenet.yaml"),
                               f"data.root={data}", "model.name=cnnnet", f"trainer.epochs={epochs}", f"run.dir={runs}",
                               "run.tensorboard=true", "trainer.batch_size=8", f"trainer.device={device}", *extra, "--json"],
                              capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            sys.exit(done.stderr[-2000:])
        run = Path(json.loads(done.stdout.strip().splitlines()[-1])["run_dir"])
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return records[-1]["time_s"] - records[0]["time_s"]  # the epochs after the first (warm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "imagefolder_photos")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    plain = min(train_seconds(args.data, args.epochs, [], args.device) for _ in range(args.rounds))
    watched = min(train_seconds(args.data, args.epochs, ["trainer.log_activations=50"], args.device) for _ in range(args.rounds))
    report([("without", f"{plain:.2f} s for epochs 2-{args.epochs}"), ("log_activations: 50", f"{watched:.2f} s")],
           watched / plain, TARGET, higher_is_better=False)


if __name__ == "__main__":
    main()
