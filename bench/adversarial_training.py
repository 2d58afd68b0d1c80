"""Adversarial training as a defence, judged on handwritten digits no run saw: the shipped
SimpleNet recipe against Madry's PGD training (imagefolder-adv-train.yaml) and TRADES
(imagefolder-trades.yaml), all trained on ../shared/data/imagefolder_digits, robust accuracy
under PGD (L-inf eps 0.1, 10 steps) on 400 other digits of scikit-learn's set
(bench/unseen_digits.py; the settings were chosen on the draw with seed 7, these are seed 8's,
disjoint from it). Goal: TRADES +35 points of robust accuracy over the plain recipe, clean
accuracy >= 0.85, training within 2 CPU minutes.

    python bench/adversarial_training.py [--data ../shared/data/imagefolder_digits] [--device cpu]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import report
from unseen_digits import write_unseen

REPO = Path(__file__).resolve().parents[1]
GOAL_POINTS, CLEAN_FLOOR, MINUTES = 35, 0.85, 2.0
RECIPES = (("plain", "imagefolder-simplenet.yaml"), ("madry", "imagefolder-adv-train.yaml"), ("trades", "imagefolder-trades.yaml"))


def ptcli(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "ptcli", *args, "--json"], capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        sys.exit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "imagefolder_digits")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not (args.data / "val").is_dir():
        sys.exit(f"no ImageFolder at {args.data} (train/ and val/)")
    rows, scores = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tuning = write_unseen(Path(tmp) / "tuning", seed=7)
        unseen = write_unseen(Path(tmp) / "unseen", seed=8, exclude=tuning) / "val"
        for name, recipe in RECIPES:
            start = time.perf_counter()
            trained = ptcli("train", str(REPO / "recipes" / recipe), f"data.root={args.data}", f"run.dir={tmp}/runs",
                            f"trainer.device={args.device}", "run.tensorboard=false")
            minutes = (time.perf_counter() - start) / 60
            scored = {split: ptcli("attack", "--data", str(folder), "--checkpoint", trained["best_checkpoint"], "--method", "pgd",
                                   "--eps", "0.1", "--steps", "10", "--no-checks", "--device", args.device)
                      for split, folder in (("shared val", args.data / "val"), ("unseen", unseen))}
            scores[name] = scored["unseen"] | {"minutes": minutes}
            rows.append((f"{name} ({recipe})", f"unseen: clean {scored['unseen']['clean_accuracy']:.3f} robust "
                                               f"{scored['unseen']['robust_accuracy']:.3f} | shared val: clean "
                                               f"{scored['shared val']['clean_accuracy']:.3f} robust "
                                               f"{scored['shared val']['robust_accuracy']:.3f} | {minutes:.2f} min"))
    gains = {name: 100 * (scores[name]["robust_accuracy"] - scores["plain"]["robust_accuracy"]) for name in ("madry", "trades")}
    trades = scores["trades"]
    rows += [(f"{name} gain on unseen", f"{gain:+.1f} points of robust accuracy") for name, gain in gains.items()]
    rows += [("TRADES goal", f"+{GOAL_POINTS} points, clean >= {CLEAN_FLOOR}, <= {MINUTES:.0f} min: "
                             f"{'met' if gains['trades'] >= GOAL_POINTS and trades['clean_accuracy'] >= CLEAN_FLOOR and trades['minutes'] <= MINUTES else 'NOT met'}"),
             ("ratio below", f"TRADES points gained / {GOAL_POINTS}")]
    report(rows, gains["trades"] / GOAL_POINTS, 1.0)


if __name__ == "__main__":
    main()
