"""`detect --track` against the reference the issue sets: the same checkpoint's raw detections
(`detect --json` at its default threshold, 0.5) fed to the `trackers` library's tracker with
its defaults, each scored with `ptcli eval TRACKS gt.txt` (MOTA, IDF1, HOTA; class-agnostic).
Goal: ptcli at least the reference on all three, averaged over the held-out videos, for
ByteTrack and BoT-SORT.

Videos: make_video.py's, with seeds and photos that neither the detector's training nor the
tracker settings saw; two of the four with shapes 1.5x as fast (they cross more often). The
settings in plugins/ptcli_detect/tracking.py were chosen on the --set tuning videos only.

    python bench/tracking_quality.py --checkpoint runs-bench/detect/detect-finetune/checkpoints/best.safetensors [--set tuning]
"""

import argparse
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from report import report

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
#: (seed, scikit-image photo, speed factor): make_video.py draws each shape's speed in 1.5-5
#: pixels a frame; the factor scales that draw.
HELD_OUT = [(1101, "camera.png", 1.0), (1202, "coins.png", 1.5), (1303, "ihc.png", 1.0), (1404, "retina.jpg", 1.5)]
TUNING = [(555, "motorcycle_right.png", 1.0), (556, "hubble_deep_field.jpg", 1.5), (557, "astronaut.png", 1.3)]
METRICS = ("MOTA", "IDF1", "HOTA")


def ptcli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "ptcli", *args], capture_output=True, text=True, env={**os.environ})
    if done.returncode != 0:
        raise SystemExit(f"ptcli {' '.join(args)} failed: {done.stderr.strip()[-400:]}")
    return done.stdout


def make_video(out: Path, seed: int, photo: str, speed: float) -> Path:
    """make_video.py's video, its shapes ``speed`` times as fast."""
    if (out / "shapes.mp4").exists():
        return out
    spec = importlib.util.spec_from_file_location("make_video", SHARED / "make_video.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)

    class Faster(random.Random):
        def uniform(self, a, b):
            value = super().uniform(a, b)
            return value * speed if (a, b) == (1.5, 5.0) else value  # the speed draw alone

    generator.random = type("random", (), {"Random": Faster})
    generator.make(out, seed, photo)
    return out


def raw_detections(video: Path, checkpoint: str) -> list[dict]:
    """`detect --json` at its default threshold: what a user would feed a tracker."""
    return [json.loads(line) for line in ptcli("detect", str(video), "--checkpoint", checkpoint, "--json").splitlines()]


def reference_tracks(video: Path, frames: list[dict], name: str, destination: Path) -> Path:
    """Raw detections through the library's tracker, with its defaults."""
    import numpy as np
    import supervision as sv
    import trackers

    classes = {"bytetrack": trackers.ByteTrackTracker, "botsort": trackers.BoTSORTTracker, "ocsort": trackers.OCSORTTracker}
    tracker = classes[name]()
    lines = []
    pictures = _pictures(video) if name == "botsort" else None
    for record in frames:
        rows = record["detections"]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in rows)], dtype=np.float32).reshape(-1, 4)
        detections = sv.Detections(xyxy=boxes, confidence=np.array([r["score"] for r in rows], dtype=np.float32),
                                   class_id=np.array([r["category_id"] for r in rows], dtype=int))
        found = tracker.update(detections, frame=pictures[record["frame"]]) if pictures else tracker.update(detections)
        for (x1, y1, x2, y2), score, track in zip(found.xyxy, found.confidence, found.tracker_id):
            if track >= 0:
                lines.append(f"{record['frame'] + 1},{track + 1},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{score:.6f},-1,-1,-1\n")
    destination.write_text("".join(lines))
    return destination


def _pictures(video: Path) -> list:
    import av
    import numpy as np

    with av.open(str(video)) as container:
        return [np.asarray(frame.to_image())[..., ::-1] for frame in container.decode(video=0)]


def score(tracks: Path, gt: Path) -> dict:
    return json.loads(ptcli("eval", str(tracks), str(gt), "--json"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--trackers", default="bytetrack,botsort")
    parser.add_argument("--set", choices=("held-out", "tuning"), default="held-out")
    parser.add_argument("--videos", type=Path, default=Path(tempfile.gettempdir()) / "ptcli-tracking-videos")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (SHARED / "make_video.py").is_file():
        sys.exit(f"no make_video.py at {SHARED} (see ../shared/data/README.md)")
    chosen = HELD_OUT if args.set == "held-out" else TUNING
    sets = [(f"seed {seed} {photo} x{speed:g}", make_video(args.videos / f"s{seed}", seed, photo, speed)) for seed, photo, speed in chosen]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        for label, folder in sets:
            video, gt = folder / "shapes.mp4", folder / "gt.txt"
            raw = raw_detections(video, args.checkpoint)
            for name in args.trackers.split(","):
                mine = work / f"{folder.name}-{name}-ptcli.txt"
                ptcli("detect", str(video), "--checkpoint", args.checkpoint, "--track", name, "--mot", str(mine), "--json")
                theirs = reference_tracks(video, raw, name, work / f"{folder.name}-{name}-reference.txt")
                for who, path in (("ptcli --track", mine), ("reference", theirs)):
                    scored = score(path, gt)
                    rows.append({"video": label, "tracker": name, "who": who, **{k: scored[k] for k in
                                 (*METRICS, "id_switches", "false_positives", "misses")}})
                    print(json.dumps(rows[-1]) if args.json else
                          f"{label:<34} {name:<9} {who:<14} MOTA {scored['MOTA']:.3f}  IDF1 {scored['IDF1']:.3f}  "
                          f"HOTA {scored['HOTA']:.3f}  IDSW {scored['id_switches']:>3}  FP {scored['false_positives']:>4}  "
                          f"FN {scored['misses']:>4}", flush=True)
    summary, ratios = [], []
    for name in args.trackers.split(","):
        means = {}
        for who in ("ptcli --track", "reference"):
            mine = [r for r in rows if r["tracker"] == name and r["who"] == who]
            means[who] = {k: sum(r[k] for r in mine) / len(mine) for k in METRICS}
            summary.append((f"{name}, {who}: mean MOTA / IDF1 / HOTA", " / ".join(f"{means[who][k]:.3f}" for k in METRICS)))
        ratios += [(f"{name} {k}", means["ptcli --track"][k] / means["reference"][k]) for k in METRICS]
    worst = min(ratios, key=lambda item: item[1])
    summary.append(("lowest ptcli / reference", f"{worst[1]:.3f} ({worst[0]}; {len(sets)} {args.set} videos)"))
    report(summary, worst[1], 1.0, figure="tracking: ptcli / reference (lowest of MOTA, IDF1, HOTA)",
           ours=f"{worst[1]:.3f}", baseline="1.0")


if __name__ == "__main__":
    main()
