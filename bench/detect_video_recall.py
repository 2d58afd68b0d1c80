"""A detect checkpoint on video frames against MOTChallenge ground truth: the share of fully
visible shapes (visibility >= 0.99) found by a detection of their class at score >= 0.5 with
IoU >= 0.5 (and >= 0.3), and the detections per frame that match nothing. Scored on
../shared/data/video/shapes.mp4 and on a video drawn here with make_video.py's other seed and
photo (never tuned on). Frames are decoded with PyAV (bench-only: pip install av) and detected
by `ptcli detect` as PNG files, one at a time.

    python bench/detect_video_recall.py --checkpoint runs-bench/detect/detect-finetune/checkpoints/best.safetensors
"""

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO.parent / "shared" / "data" / "video"


def frames_to_png(video: Path, out: Path) -> list[Path]:
    import av

    paths = []
    with av.open(str(video)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            path = out / f"{index + 1:06d}.png"
            frame.to_image().save(path)
            paths.append(path)
    return paths


def ground_truth(gt: Path) -> dict[int, list[tuple[int, list[float], float]]]:
    boxes = defaultdict(list)
    for line in gt.read_text().splitlines():
        frame, _track, x, y, w, h, _flag, cls, visibility = line.split(",")[:9]
        boxes[int(frame)].append((int(cls), [float(x), float(y), float(w), float(h)], float(visibility)))
    return boxes


def iou(a, b) -> float:
    w = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return w * h / (a[2] * a[3] + b[2] * b[3] - w * h)


def score(checkpoint: Path, video: Path, gt: Path) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        frames = frames_to_png(video, Path(scratch))
        done = subprocess.run([sys.executable, "-m", "ptcli", "detect", *map(str, frames), "--checkpoint", str(checkpoint),
                               "--threshold", "0.5", "--json", "--device", "cpu"], capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            sys.exit(f"ptcli detect failed: {done.stderr.strip()[-400:]}")
    found = {int(Path(row["input"]).stem): row["detections"] for row in map(json.loads, done.stdout.splitlines())}
    truth = ground_truth(gt)
    visible = hit50 = hit30 = spurious = 0
    for frame, detections in found.items():
        shapes = truth.get(frame, [])
        for cls, box, visibility in shapes:
            if visibility < 0.99:
                continue
            visible += 1
            best = max([iou(box, d["bbox"]) for d in detections if d["category_id"] == cls], default=0.0)
            hit50 += best >= 0.5
            hit30 += best >= 0.3
        spurious += sum(1 for d in detections if max([iou(box, d["bbox"]) for _, box, _ in shapes], default=0.0) < 0.3)
    return {"frames": len(found), "visible": visible, "recall50": hit50 / visible, "recall30": hit30 / visible,
            "unmatched_per_frame": spurious / len(found)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--photo", default="motorcycle_left.png")
    args = parser.parse_args()
    if not (VIDEO / "shapes.mp4").is_file():
        sys.exit(f"benchmark data not found: {VIDEO} (see ../shared/data/README.md)")
    with tempfile.TemporaryDirectory() as scratch:
        held_out = Path(scratch) / "video"
        subprocess.run([sys.executable, str(VIDEO.parent / "make_video.py"), "--out", str(held_out), "--seed", str(args.seed),
                        "--photo", args.photo], check=True, capture_output=True)
        for label, folder in (("shapes.mp4", VIDEO), (f"held out (seed {args.seed}, {args.photo})", held_out)):
            r = score(args.checkpoint, folder / "shapes.mp4", folder / "gt.txt")
            print(f"{label}: {r['frames']} frames, {r['visible']} fully visible shapes; recall at score >= 0.5: "
                  f"{r['recall50']:.3f} (IoU >= 0.5), {r['recall30']:.3f} (IoU >= 0.3); "
                  f"{r['unmatched_per_frame']:.2f} unmatched detections a frame")


if __name__ == "__main__":
    main()
