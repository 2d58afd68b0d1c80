"""`detect --track` against the reference the issue sets: the same checkpoint's raw detections
(`detect --json` at its default threshold, 0.5) fed to the `trackers` library's tracker with
its defaults, each scored with `ptcli eval TRACKS gt.txt` (MOTA, IDF1, HOTA; class-agnostic).

Videos: make_video.py's with other seeds and photos than the shared one (held out: nothing was
tuned on them), and the shared shapes.mp4. Prints a table and, with --json, one object per row.

    python bench/tracking_quality.py --checkpoint runs-bench/detect/detect-finetune/checkpoints/best.safetensors
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
HELD_OUT = [(101, "astronaut.png"), (202, "chelsea.png"), (303, "rocket.jpg"), (404, "motorcycle_left.png")]


def ptcli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "ptcli", *args], capture_output=True, text=True, env={**os.environ})
    if done.returncode != 0:
        raise SystemExit(f"ptcli {' '.join(args)} failed: {done.stderr.strip()[-400:]}")
    return done.stdout


def make_video(out: Path, seed: int, photo: str) -> Path:
    if not (out / "shapes.mp4").exists():
        subprocess.run([sys.executable, str(SHARED / "make_video.py"), "--out", str(out), "--seed", str(seed),
                        "--photo", photo], check=True, capture_output=True)
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
    parser.add_argument("--trackers", default="bytetrack,botsort,ocsort")
    parser.add_argument("--videos", type=Path, default=Path(tempfile.gettempdir()) / "ptcli-heldout-videos")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sets = [(f"held-out seed {seed} ({photo})", make_video(args.videos / f"s{seed}", seed, photo)) for seed, photo in HELD_OUT]
    if (SHARED / "video" / "shapes.mp4").exists():
        sets.append(("shared shapes.mp4", SHARED / "video"))
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
                    report = score(path, gt)
                    rows.append({"video": label, "tracker": name, "who": who, **{k: report[k] for k in
                                 ("MOTA", "IDF1", "HOTA", "id_switches", "false_positives", "misses")}})
                    print(json.dumps(rows[-1]) if args.json else
                          f"{label:<36} {name:<9} {who:<14} MOTA {report['MOTA']:.3f}  IDF1 {report['IDF1']:.3f}  "
                          f"HOTA {report['HOTA']:.3f}  IDSW {report['id_switches']:>3}  FP {report['false_positives']:>4}  "
                          f"FN {report['misses']:>4}", flush=True)
    held = [r for r in rows if r["video"].startswith("held-out")]
    for name in args.trackers.split(","):
        for who in ("ptcli --track", "reference"):
            mine = [r for r in held if r["tracker"] == name and r["who"] == who]
            if mine:
                mean = {k: sum(r[k] for r in mine) / len(mine) for k in ("MOTA", "IDF1", "HOTA")}
                print(f"{'held-out mean':<36} {name:<9} {who:<14} MOTA {mean['MOTA']:.3f}  IDF1 {mean['IDF1']:.3f}  HOTA {mean['HOTA']:.3f}")


if __name__ == "__main__":
    main()
