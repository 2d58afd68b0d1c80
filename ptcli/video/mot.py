"""MOTChallenge tracks: writing a tracker's output (`detect --track --mot FILE`) and scoring a
file against ground truth (`ptcli eval TRACKS.txt GT.txt`) with CLEAR (MOTA), Identity (IDF1)
and HOTA, as computed by Roboflow's `trackers` library (a port of TrackEval, checked against
it there; the tests check MOTA and IDF1 against py-motmetrics too).

Lines are ``frame,id,x,y,w,h,score,class,...``, frame counted from 1, boxes in pixels. Scoring
is class-agnostic: every ground-truth row counts except those marked not to (score column 0),
and a track is matched by its box, whatever class it was given. (TrackEval's MOT17 setting
scores only class 1, pedestrians, and treats others as distractors: not what a multi-class
tracker needs.)"""

from __future__ import annotations

from pathlib import Path

from ptcli.errors import InputError, UsageError


def mot_line(frame_index: int, row: dict) -> str:
    """A tracked detection (``track_id``, ``bbox``, ``score``, ``category_id``) of the frame
    decoded at ``frame_index`` (0-based) as a MOTChallenge line."""
    x, y, w, h = row["bbox"]
    return f"{frame_index + 1},{row['track_id']},{x:.2f},{y:.2f},{w:.2f},{h:.2f},{row['score']:.6f},{row.get('category_id', -1)},-1,-1\n"


def read_mot(path: Path) -> dict[int, list[tuple[int, float, float, float, float, float]]]:
    """frame -> [(id, x, y, w, h, mark)] where ``mark`` is the seventh column (1 when missing)."""
    frames: dict[int, list] = {}
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = [part.strip() for part in line.replace(" ", ",").split(",") if part.strip()]
        try:
            values = [float(part) for part in parts[:7]]
            if len(values) < 6:
                raise ValueError
        except ValueError:
            raise InputError(f"{path}, line {number}: not a MOTChallenge line (frame,id,x,y,w,h[,score,...]): "
                             f"{line.strip()[:60]!r}") from None
        frame, track = int(values[0]), int(values[1])
        if frame < 1:
            raise InputError(f"{path}, line {number}: frames count from 1 in MOTChallenge files (got {frame})")
        frames.setdefault(frame, []).append((track, *values[2:6], values[6] if len(values) > 6 else 1.0))
    return frames


def ground_truth_file(data: Path) -> Path:
    """gt.txt itself, or the MOTChallenge sequence folder holding gt/gt.txt (or gt.txt)."""
    data = Path(data)
    if data.is_dir():
        for candidate in (data / "gt" / "gt.txt", data / "gt.txt"):
            if candidate.is_file():
                return candidate
        raise UsageError(f"{data} holds no gt/gt.txt or gt.txt; give the MOTChallenge ground truth file")
    if not data.exists():
        raise UsageError(f"no such file: {data}")
    return data


def evaluate_mot(tracks: Path, truth: Path, *, threshold: float = 0.5) -> dict:
    """CLEAR, Identity and HOTA figures of ``tracks`` against ``truth`` (MOTChallenge files)."""
    import numpy as np
    from trackers.eval.box import box_iou
    from trackers.eval.clear import compute_clear_metrics
    from trackers.eval.hota import compute_hota_metrics
    from trackers.eval.identity import compute_identity_metrics

    truth_frames, track_frames = read_mot(truth), read_mot(tracks)
    if not truth_frames:
        raise InputError(f"{truth} holds no ground truth")
    frames = max([*truth_frames, *track_frames])
    truth_ids: dict[int, int] = {}
    track_ids: dict[int, int] = {}
    per_truth, per_track, similarity = [], [], []
    for frame in range(1, frames + 1):
        gt = [row for row in truth_frames.get(frame, []) if row[5] != 0]
        found = [row for row in track_frames.get(frame, []) if row[0] >= 0]
        per_truth.append(np.array([truth_ids.setdefault(row[0], len(truth_ids)) for row in gt], dtype=np.intp))
        per_track.append(np.array([track_ids.setdefault(row[0], len(track_ids)) for row in found], dtype=np.intp))
        similarity.append(box_iou(np.array([row[1:5] for row in gt], dtype=np.float64).reshape(-1, 4),
                                  np.array([row[1:5] for row in found], dtype=np.float64).reshape(-1, 4), box_format="xywh"))
    clear = compute_clear_metrics(per_truth, per_track, similarity, threshold=threshold)
    identity = compute_identity_metrics(per_truth, per_track, similarity, threshold=threshold)
    hota = compute_hota_metrics(per_truth, per_track, similarity)
    return {
        "tracks": str(tracks), "ground_truth": str(truth), "frames": frames,
        "MOTA": round(clear["MOTA"], 6), "IDF1": round(identity["IDF1"], 6), "HOTA": round(hota["HOTA"], 6),
        "MOTP": round(clear["MOTP"], 6), "DetA": round(hota["DetA"], 6), "AssA": round(hota["AssA"], 6),
        "IDP": round(identity["IDP"], 6), "IDR": round(identity["IDR"], 6),
        "recall": round(clear["CLR_Re"], 6), "precision": round(clear["CLR_Pr"], 6),
        "true_positives": int(clear["CLR_TP"]), "false_positives": int(clear["CLR_FP"]),
        "misses": int(clear["CLR_FN"]), "id_switches": int(clear["IDSW"]),
        "ground_truth_tracks": len(truth_ids), "predicted_tracks": len(track_ids), "iou_threshold": threshold,
    }


def format_mot_report(report: dict) -> str:
    lines = [f"{report['tracks']} against {report['ground_truth']} ({report['frames']} frames, "
             f"{report['ground_truth_tracks']} true tracks, {report['predicted_tracks']} predicted)"]
    for key in ("MOTA", "IDF1", "HOTA", "MOTP", "DetA", "AssA", "recall", "precision"):
        lines.append(f"  {key:<10} {report[key] * 100:6.2f}")
    lines.append(f"  {'ID switches':<10} {report['id_switches']}  false positives {report['false_positives']}  "
                 f"misses {report['misses']}")
    return "\n".join(lines)
