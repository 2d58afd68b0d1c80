"""A detector's figures against third-party references, on the shared detection set and on a
held-out set drawn here with another seed (never tuned on): `ptcli eval` at batch 1 and at batch
32 beside the official COCO API (pycocotools' COCOeval) on the command's own per-image
detections, and the box IoU of `detect --slice 256` against the ground truth beside detection on
the whole image. Goals: eval at any batch within 1e-4 of batch 1, and within 0.002 of COCOeval;
sliced boxes no looser than whole-image ones (ratio of mean IoUs >= 0.95).

    python bench/detect_reference.py [--checkpoint runs-bench/detect/detect-finetune/checkpoints/best.safetensors]
                                     [--seed 777] [--images 40] [--repo DIR]

--repo runs another checkout's ptcli (an older commit, for before-and-after figures). The
checkpoint comes from bench/detect_finetune.py.
"""

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from report import report

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SLICE = "256"


#: Backgrounds the shared set never uses, from the same package (scikit-image's data).
HOLDOUT_PHOTOS = ["motorcycle_left.png", "hubble_deep_field.jpg", "ihc.png", "retina.jpg", "coins.png", "camera.png", "page.png"]


def draw_holdout(out: Path, seed: int, images: int, photos: list[str] = HOLDOUT_PHOTOS) -> Path:
    """The shared generator's detection set with another seed, other background photos and a
    fourth image size."""
    sys.path.insert(0, str(SHARED))
    import make_data

    make_data.SEED = seed
    make_data.SIZES = [*make_data.SIZES[:3], (288, 224)]
    make_data.background_photos = lambda: [make_data.skimage_file(name).convert("RGB") for name in photos]
    with contextlib.redirect_stdout(io.StringIO()):
        make_data.make_detection(out, n_images=images, n_noise=images // 4, n_val=images // 4)
    return out / "detection"


def ptcli(repo: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{repo / 'plugins'}"}
    done = subprocess.run([sys.executable, "-m", "ptcli", *args], capture_output=True, text=True, env=env, cwd=repo)
    if done.returncode != 0:
        sys.exit(f"ptcli {' '.join(args[:2])} failed: {done.stderr.strip()[-400:]}")
    return done.stdout


def detections(repo: Path, checkpoint: Path, data: Path, *extra: str) -> dict[str, list[dict]]:
    coco = json.loads((data / "annotations.json").read_text())
    images = [str(data / "images" / image["file_name"]) for image in coco["images"]]
    lines = ptcli(repo, "detect", *images, "--checkpoint", str(checkpoint), "--json", "--device", "cpu", *extra).splitlines()
    return {Path(row["input"]).name: row["detections"] for row in map(json.loads, lines)}


def cocoeval(data: Path, found: dict[str, list[dict]]) -> tuple[float, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(data / "annotations.json"))
        ids = {image["file_name"]: image["id"] for image in truth.dataset["images"]}
        results = [{"image_id": ids[name], "category_id": d["category_id"], "bbox": d["bbox"], "score": d["score"]}
                   for name, rows in found.items() for d in rows]
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0]), float(evaluation.stats[1])


def box_iou(a: list[float], b: list[float]) -> float:
    """IoU of two [x, y, w, h] boxes."""
    w = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return w * h / (a[2] * a[3] + b[2] * b[3] - w * h)


def best_ious(data: Path, found: dict[str, list[dict]]) -> list[float]:
    """Per ground-truth box: the best IoU of a detection of its class (0 when none)."""
    coco = json.loads((data / "annotations.json").read_text())
    names = {image["id"]: image["file_name"] for image in coco["images"]}
    return [max([box_iou(t["bbox"], d["bbox"]) for d in found[names[t["image_id"]]] if d["category_id"] == t["category_id"]], default=0.0)
            for t in coco["annotations"]]


def figures(repo: Path, checkpoint: Path, data: Path, label: str) -> tuple[list[tuple[str, str]], float, float]:
    evals = [json.loads(ptcli(repo, "eval", str(checkpoint), str(data / "annotations.json"), "--batch-size", size, "--json"))
             for size in ("1", "32")]
    # The detections eval scores: the detector's own cutoff (0.05) and 100 per image.
    reference = cocoeval(data, detections(repo, checkpoint, data, "--threshold", "0.05", "--max-detections", "100"))
    whole = best_ious(data, detections(repo, checkpoint, data, "--threshold", "0.5"))
    sliced = best_ious(data, detections(repo, checkpoint, data, "--threshold", "0.5", "--slice", SLICE))
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    recall = lambda values: sum(v >= 0.5 for v in values) / len(values)  # noqa: E731
    rows = [(f"{label}: eval mAP / mAP@.5, batch 1", f"{evals[0]['map']:.4f} / {evals[0]['map_50']:.4f}"),
            (f"{label}: eval mAP / mAP@.5, batch 32", f"{evals[1]['map']:.4f} / {evals[1]['map_50']:.4f}"),
            (f"{label}: pycocotools COCOeval", f"{reference[0]:.4f} / {reference[1]:.4f}"),
            (f"{label}: box IoU, whole image (mean, recall@.5)", f"{mean(whole):.3f}, {recall(whole):.3f} of {len(whole)}"),
            (f"{label}: box IoU, --slice {SLICE}", f"{mean(sliced):.3f}, {recall(sliced):.3f}")]
    gap = max(abs(evals[0][k] - evals[1][k]) for k in ("map", "map_50"))
    reference_gap = max(abs(evals[0]["map"] - reference[0]), abs(evals[0]["map_50"] - reference[1]))
    return rows + [(f"{label}: |batch 1 - batch 32|, |eval - COCOeval|", f"{gap:.5f}, {reference_gap:.5f}")], mean(sliced) / mean(whole), max(gap, reference_gap)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO / "runs-bench" / "detect" / "detect-finetune" / "checkpoints" / "best.safetensors")
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--repo", type=Path, default=REPO)
    args = parser.parse_args()
    if not args.checkpoint.is_file():
        sys.exit(f"no checkpoint at {args.checkpoint}: run bench/detect_finetune.py first")
    if not (SHARED / "detection" / "annotations.json").is_file():
        sys.exit(f"benchmark data not found: {SHARED / 'detection'} (see ../shared/data/README.md)")
    with tempfile.TemporaryDirectory() as scratch:
        holdout = draw_holdout(Path(scratch), args.seed, args.images)
        rows, ratios, gaps = [("ptcli", str(args.repo))], [], []
        for data, label in ((SHARED / "detection", "shared (30)"), (holdout, f"held out ({args.images}, seed {args.seed})")):
            more, ratio, gap = figures(args.repo.resolve(), args.checkpoint.resolve(), data, label)
            rows, ratios, gaps = rows + more, ratios + [ratio], gaps + [gap]
    rows.append(("largest eval gap (goal <= 0.002)", f"{max(gaps):.5f}: {'OK' if max(gaps) <= 0.002 else 'MISSED'}"))
    report(rows, min(ratios), 0.95, figure="sliced / whole-image box IoU", ours=f"{min(ratios):.3f}", baseline="1.0")


if __name__ == "__main__":
    main()
