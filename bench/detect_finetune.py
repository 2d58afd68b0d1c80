"""Fine-tune the offline detect recipe (recipes/coco-fasterrcnn.yaml: Faster R-CNN on the
packaged EfficientNet-Lite0) on ../shared/data/detection with its default schedule, and print
val mAP@.5, mAP and the wall time. Goals: mAP@.5 >= 0.75 on the 6 held-out images, at most
10 minutes. The anchor to beat: a hand-written loop (timm Lite0 + torchvision FPN + FasterRCNN,
min_size 320, SGD 0.01, flips, batch 4) reached 0.74 mAP@.5 (0.27 mAP) after 16 epochs, 7.4 min.

    python bench/detect_finetune.py [--data ../shared/data/detection] [--out runs-bench]

The run folder is kept (--out): bench/detect_slicing.py scores its best checkpoint.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from report import report

REPO = Path(__file__).resolve().parents[1]
ANCHOR_MAP50, ANCHOR_MAP, ANCHOR_MINUTES = 0.74, 0.27, 7.4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "detection")
    parser.add_argument("--out", type=Path, default=REPO / "runs-bench")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not (args.data / "train.json").is_file():
        sys.exit(f"no COCO data at {args.data} (train.json, val.json, images/)")
    command = [sys.executable, "-m", "ptcli", "train", str(REPO / "recipes" / "coco-fasterrcnn.yaml"), f"data.root={args.data}",
               f"run.dir={args.out}", "run.name=detect-finetune", f"trainer.device={args.device}", "run.tensorboard=false", "--json"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    minutes = (time.perf_counter() - start) / 60
    if done.returncode != 0:
        sys.exit(done.stderr[-2000:])
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    run = Path(summary["run_dir"])
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    at_best = max(epochs, key=lambda e: e["val/map"])  # the monitored metric: the first epoch that reached it
    print(f"checkpoint: {summary['best_checkpoint']}")
    report([("epochs", str(len(epochs))),
            ("wall time", f"{minutes:.1f} min (goal <= 10; anchor {ANCHOR_MINUTES} min)"),
            ("best val mAP@.5", f"{at_best['val/map_50']:.3f} (goal >= 0.75; anchor {ANCHOR_MAP50})"),
            ("best val mAP", f"{at_best['val/map']:.3f} (anchor {ANCHOR_MAP})"),
            ("last val mAP@.5 / mAP", f"{epochs[-1]['val/map_50']:.3f} / {epochs[-1]['val/map']:.3f}"),
            ("mAP@.5 against the anchor", f"{at_best['val/map_50'] / ANCHOR_MAP50:.2f}x"),
            ("ratio below", "best mAP@.5 / the 0.75 goal")],
           at_best["val/map_50"] / 0.75, 1.0)
    print(f"time {'OK' if minutes <= 10 else 'MISSED'}: {minutes:.1f} min (goal <= 10)")


if __name__ == "__main__":
    main()
