"""Adversarial training as a defence, measured: the shipped SimpleNet recipe against the
adversarial-training recipe on ../shared/data/imagefolder_digits (real handwriting, 10
classes), robust accuracy under PGD (L-inf eps 0.1, 10 steps) on the validation images, with
the clean-accuracy cost beside it. Goal: +30 points of robust accuracy.

    python bench/adversarial_training.py [--data ../shared/data/imagefolder_digits] [--epochs N]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import report

REPO = Path(__file__).resolve().parents[1]
GOAL_POINTS = 30


def ptcli(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "ptcli", *args, "--json"], capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        sys.exit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "imagefolder_digits")
    parser.add_argument("--epochs", type=int, help="default: the recipes' own (10)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not (args.data / "val").is_dir():
        sys.exit(f"no ImageFolder at {args.data} (train/ and val/)")
    rows, scores = [], {}
    with tempfile.TemporaryDirectory() as runs:
        for name, recipe in (("plain", "imagefolder-simplenet.yaml"), ("adversarial", "imagefolder-adv-train.yaml")):
            start = time.perf_counter()
            extra = [f"trainer.epochs={args.epochs}"] if args.epochs else []
            trained = ptcli("train", str(REPO / "recipes" / recipe), f"data.root={args.data}", f"run.dir={runs}",
                            f"trainer.device={args.device}", "run.tensorboard=false", *extra)
            minutes = (time.perf_counter() - start) / 60
            scores[name] = ptcli("attack", "--data", str(args.data / "val"), "--checkpoint", trained["best_checkpoint"],
                                 "--method", "pgd", "--eps", "0.1", "--steps", "10", "--no-checks", "--device", args.device)
            rows.append((f"{name} ({recipe})", f"clean {scores[name]['clean_accuracy']:.3f}  robust {scores[name]['robust_accuracy']:.3f}  "
                                               f"training {minutes:.1f} min"))
    gain = 100 * (scores["adversarial"]["robust_accuracy"] - scores["plain"]["robust_accuracy"])
    cost = 100 * (scores["plain"]["clean_accuracy"] - scores["adversarial"]["clean_accuracy"])
    rows += [("robust accuracy gained", f"{gain:+.1f} points (goal >= +{GOAL_POINTS})"), ("clean accuracy cost", f"{cost:.1f} points"),
             ("ratio below", f"points gained / {GOAL_POINTS}")]
    report(rows, gain / GOAL_POINTS, 1.0)


if __name__ == "__main__":
    main()
