"""Video in and out through the one inference contract: files, image sequences and streams
read frame by frame, --json per frame, damaged and dropped sources, written videos with their
audio, tracking, MOTChallenge files and their metrics against py-motmetrics."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from video_files import make_video, truncate


def _lines(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """20 frames of 64x48 at 10 fps, with a tone as audio."""
    return make_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames=20, audio=True)


@pytest.fixture(scope="module")
def random_detector(tmp_path_factory) -> Path:
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)
    path = tmp_path_factory.mktemp("weights") / "mobilenet.safetensors"
    save_file(model.state_dict(), path)
    return path


def _decoded_frames(path: Path) -> list:
    with av.open(str(path)) as container:
        return [frame.to_image() for frame in container.decode(video=0)]


# --- reading -------------------------------------------------------------------------------


def test_classify_image_gives_each_frame_what_the_same_picture_gets_as_an_image(cli, clip, tmp_path):
    frames = _decoded_frames(clip)
    for index in (0, 7, 19):
        frames[index].save(tmp_path / f"frame{index}.png")
    video = cli("classify-image", clip, "--json", "-k", "3")
    assert video.exit_code == 0, video.stderr
    rows = _lines(video)
    assert [row["frame"] for row in rows] == list(range(20))
    assert [row["time"] for row in rows] == pytest.approx([i / 10 for i in range(20)])
    assert all(row["input"] == str(clip) for row in rows)
    images = _lines(cli("classify-image", *(tmp_path / f"frame{i}.png" for i in (0, 7, 19)), "--json", "-k", "3"))
    for image, index in zip(images, (0, 7, 19)):
        got, expected = rows[index]["predictions"], image["predictions"]
        assert [p["label"] for p in got] == [p["label"] for p in expected]
        assert [p["score"] for p in got] == pytest.approx([p["score"] for p in expected], abs=1e-5)


@pytest.mark.parametrize(("options", "frames"), [
    (("--vid-stride", "3"), [0, 3, 6, 9, 12, 15, 18]),
    (("--start", "0.5", "--end", "1.2"), [5, 6, 7, 8, 9, 10, 11]),
    (("--start", "1.0", "--vid-stride", "4"), [10, 14, 18]),
    (("--end", "0.3"), [0, 1, 2]),
])
def test_stride_start_and_end_pick_frames_by_their_decoded_index(cli, clip, options, frames):
    result = cli("classify-image", clip, "--json", "-k", "1", *options)
    assert result.exit_code == 0, result.stderr
    rows = _lines(result)
    assert [row["frame"] for row in rows] == frames
    assert [row["time"] for row in rows] == pytest.approx([f / 10 for f in frames])


def test_images_and_videos_mix_in_the_order_given(cli, clip, tmp_path):
    _decoded_frames(clip)[0].save(tmp_path / "still.png")
    rows = _lines(cli("classify-image", tmp_path / "still.png", clip, "--end", "0.2", "--json", "-k", "1"))
    assert [(Path(r["input"]).name, r.get("frame")) for r in rows] == [("still.png", None), ("clip.mp4", 0), ("clip.mp4", 1)]


def test_a_folder_holds_videos_too(cli, clip, tmp_path):
    shutil.copy(clip, tmp_path / "a.mp4")
    rows = _lines(cli("classify-image", tmp_path, "--vid-stride", "10", "--json", "-k", "1"))
    assert [(Path(r["input"]).name, r["frame"]) for r in rows] == [("a.mp4", 0), ("a.mp4", 10)]


@pytest.mark.parametrize("json_output", [False, True])
@pytest.mark.parametrize("fraction", [0.45, 0.75])
def test_a_truncated_video_gives_its_frames_then_one_error_line(cli, clip, tmp_path, fraction, json_output):
    cut = truncate(Path(shutil.copy(clip, tmp_path / "cut.mp4")), fraction)
    result = cli("classify-image", cut, "-k", "1", *(["--json"] if json_output else []))
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr + result.stdout
    if json_output:
        rows = _lines(result)
        good, last = rows[:-1], rows[-1]
        assert last == {"input": str(cut), "error": last["error"]} and "truncated" in last["error"]
        assert 0 < len(good) < 20 and [r["frame"] for r in good] == list(range(len(good)))
    else:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert errors[0].startswith(f"error: {cut}: cannot read the video after frame ") and "truncated" in errors[0]
        assert errors[1:] == ["error: 1 of 1 inputs could not be read"]
        assert result.stdout.count(f"{cut} frame ") > 0


def test_a_video_cut_before_its_index_a_text_file_and_an_empty_file_are_one_line_each(cli, tmp_path):
    headless = truncate(make_video(tmp_path / "late-index.mp4", faststart=False), 0.6)
    (tmp_path / "words.mp4").write_text("not a video at all\n")
    (tmp_path / "empty.mkv").write_bytes(b"")
    result = cli("classify-image", headless, tmp_path / "words.mp4", tmp_path / "empty.mkv", "--json")
    assert result.exit_code == 1
    rows = _lines(result)
    assert [Path(r["input"]).name for r in rows] == ["late-index.mp4", "words.mp4", "empty.mkv"]
    assert "cut short before its index" in rows[0]["error"] or "is it a complete video file?" in rows[0]["error"]
    assert "cannot read it as a video" in rows[1]["error"] and "cannot read it as a video" in rows[2]["error"]
    assert all(set(r) == {"input", "error"} and "\n" not in r["error"] for r in rows)


def test_a_video_with_no_frames_and_a_start_after_the_end_are_one_line_each(cli, clip, tmp_path):
    path = tmp_path / "none.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()  # the header, and no frame
    result = cli("classify-image", path, "--json")
    assert result.exit_code == 1
    assert _lines(result) == [{"input": str(path), "error": "cannot read it as a video (End of file); is it a complete video file?"}]
    late = cli("classify-image", clip, "--start", "5", "--json")
    assert late.exit_code == 1
    assert _lines(late) == [{"input": str(clip), "error": "no frames at or after --start 5 s (the video lasts 2.00 s)"}]


def test_missing_video_and_sequence_are_usage_errors_before_any_model_loads(cli, tmp_path):
    missing = cli("classify-image", tmp_path / "gone.mp4")
    assert missing.exit_code == 2 and "no such file or folder" in missing.stderr
    sequence = cli("classify-image", str(tmp_path / "frames" / "%04d.png"))
    assert sequence.exit_code == 2 and "no files match the image sequence" in sequence.stderr
    backwards = cli("classify-image", tmp_path, "--start", "2", "--end", "1")
    assert backwards.exit_code == 2 and "--end 2 is not after --start 2" not in backwards.stderr
    assert "--end 1 is not after --start 2" in backwards.stderr


def test_an_image_sequence_is_a_video(cli, clip, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, picture in enumerate(_decoded_frames(clip)[:6]):
        picture.save(folder / f"{index + 1:04d}.png")
    result = cli("classify-image", str(folder / "%04d.png"), "--json", "-k", "1")
    assert result.exit_code == 0, result.stderr
    assert [r["frame"] for r in _lines(result)] == list(range(6))


def test_a_webcam_that_is_not_there_is_one_line(cli):
    result = cli("classify-image", "57", "--json")
    assert result.exit_code == 1
    (row,) = _lines(result)
    assert row["input"] == "57" and ("no such camera" in row["error"] or "cannot open it" in row["error"])


class _OneShotServer:
    """A server on 127.0.0.1 that answers one connection with ``payload`` (after ``header``),
    then closes it: a stream that drops."""

    def __init__(self, payload: bytes, header: bytes = b"") -> None:
        self.payload, self.header = payload, header
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(20)
        self.port = self.socket.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            connection, _ = self.socket.accept()
        except OSError:
            return
        with connection:
            if self.header:
                connection.recv(65536)  # the request
                connection.sendall(self.header)
            connection.sendall(self.payload)
        self.socket.close()


def _mpegts(clip: Path, tmp_path: Path) -> bytes:
    path = tmp_path / "stream.ts"
    with av.open(str(clip)) as source, av.open(str(path), "w", format="mpegts") as target:
        stream = target.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in source.decode(video=0):
            target.mux(stream.encode(av.VideoFrame.from_image(frame.to_image())))
        target.mux(stream.encode(None))
    return path.read_bytes()


def test_a_live_stream_that_drops_gives_its_frames_then_one_line(cli, clip, tmp_path):
    data = _mpegts(clip, tmp_path)
    server = _OneShotServer(data[: len(data) // 2])
    result = cli("classify-image", f"tcp://127.0.0.1:{server.port}", "--json", "-k", "1")
    assert result.exit_code == 1
    rows = _lines(result)
    assert rows[-1]["input"] == f"tcp://127.0.0.1:{server.port}"
    assert "the stream ended after frame" in rows[-1]["error"]
    assert 0 < len(rows) - 1 < 20 and [r["frame"] for r in rows[:-1]] == list(range(len(rows) - 1))


def test_an_http_video_cut_off_midway_is_reported_as_truncated(cli, clip, tmp_path):
    data = clip.read_bytes()
    header = (f"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: {len(data)}\r\n"
              "Connection: close\r\n\r\n").encode()
    server = _OneShotServer(data[: int(len(data) * 0.6)], header)
    result = cli("classify-image", f"http://127.0.0.1:{server.port}/clip.mp4", "--json", "-k", "1")
    assert result.exit_code == 1
    rows = _lines(result)
    assert 0 < len(rows) - 1 < 20 and "error" in rows[-1]


# --- writing -------------------------------------------------------------------------------


def _streams(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        times = [float(frame.time) for frame in container.decode(video=0)]
        frames = len(times)
    with av.open(str(path)) as container:
        audio = container.streams.audio[0] if container.streams.audio else None
        return {"size": (video.codec_context.width, video.codec_context.height), "fps": round(1 / float(np.median(np.diff(times))), 3),
                "frames": frames, "audio": None if audio is None else audio.codec_context.name,
                "audio_seconds": None if audio is None else float(sum(p.duration or 0 for p in container.demux(audio)) * audio.time_base)}


def test_detect_writes_the_drawn_video_at_the_source_rate_with_its_audio(cli, clip, random_detector, tmp_path):
    out = tmp_path / "out"
    result = cli("detect", clip, "-m", "fasterrcnn_mobilenet_v3_large_fpn", "--weights", random_detector,
                 "--threshold", "0", "--max-detections", "3", "-o", out, "--json")
    assert result.exit_code == 0, result.stderr
    rows = _lines(result)
    assert len(rows) == 20 and all(r["output"] == str(out / "clip_detect.mp4") for r in rows)
    assert all(len(r["detections"]) == 3 for r in rows)
    written = _streams(out / "clip_detect.mp4")
    assert written["size"] == (64, 48) and written["fps"] == 10 and written["frames"] == 20
    assert written["audio"] == "aac" and written["audio_seconds"] == pytest.approx(2.0, abs=0.05)
    assert sorted(p.name for p in out.iterdir()) == ["clip_detect.mp4"]
    # the drawing differs from the frame where the boxes are
    drawn, plain = np.asarray(_decoded_frames(out / "clip_detect.mp4")[0], dtype=int), np.asarray(_decoded_frames(clip)[0], dtype=int)
    assert np.abs(drawn - plain).max() > 100
    again = cli("detect", clip, "-m", "fasterrcnn_mobilenet_v3_large_fpn", "--weights", random_detector, "-o", out, "--json")
    # before any frame: a usage error naming the file, not an input that "could not be read"
    assert again.exit_code == 2 and _lines(again) == [
        {"error": f"-o {out}: {out / 'clip_detect.mp4'} exists; pass --overwrite to replace it", "exit_code": 2}]


def test_a_cut_keeps_its_audio_in_step_and_stride_keeps_time(cli, clip, random_detector, tmp_path):
    result = cli("detect", clip, "-m", "fasterrcnn_mobilenet_v3_large_fpn", "--weights", random_detector,
                 "--start", "0.5", "--end", "1.5", "--vid-stride", "2", "-o", tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    written = _streams(tmp_path / "clip_detect.mp4")
    assert written["frames"] == 5 and written["fps"] == 5
    assert written["audio_seconds"] == pytest.approx(1.0, abs=0.05)


def test_webm_stays_webm_with_its_opus_audio_and_aac_in_avi_is_dropped_with_a_warning(cli, tmp_path):
    webm = make_video(tmp_path / "in" / "talk.webm", frames=10, audio=True)
    result = cli("super-resolve", webm, "-m", "bicubic", "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.stderr
    written = _streams(tmp_path / "out" / "talk_x4.webm")
    assert written["size"] == (256, 192) and written["frames"] == 10 and written["audio"] == "opus"
    avi = make_video(tmp_path / "in" / "old.mp4", frames=10, audio=True)
    shutil.copy(avi, tmp_path / "in" / "old.avi")  # an mp4 under another name: read by its content
    result = cli("super-resolve", tmp_path / "in" / "old.avi", "-m", "bicubic", "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.stderr
    assert "the audio (aac) is not copied, a .avi file cannot hold it" in result.stderr
    assert _streams(tmp_path / "out" / "old_x4.avi")["audio"] is None


def test_super_resolve_frames_are_the_upscaled_pictures(cli, clip, tmp_path):
    result = cli("super-resolve", clip, "-m", "bicubic", "--end", "0.3", "-o", tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    assert [r["size"] for r in _lines(result)] == [[256, 192]] * 3
    frames = _decoded_frames(clip)[:3]
    for index, picture in enumerate(frames):
        picture.save(tmp_path / f"f{index}.png")
    cli("super-resolve", *(tmp_path / f"f{i}.png" for i in range(3)), "-m", "bicubic", "-o", tmp_path / "png")
    written = _decoded_frames(tmp_path / "clip_x4.mp4")
    for index in range(3):
        expected = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(tmp_path / "png" / f"f{index}_x4.png").convert("RGB"), dtype=float)
        assert np.abs(np.asarray(written[index], dtype=float) - expected).mean() < 4  # H.264 at crf 20


def test_explain_writes_a_video_of_heat_maps(cli, clip, tmp_path):
    result = cli("explain", clip, "--end", "0.3", "-o", tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    rows = _lines(result)
    assert len(rows) == 3 and all(r["output"] == str(tmp_path / "clip_cam.mp4") and "label" in r for r in rows)
    assert _streams(tmp_path / "clip_cam.mp4")["frames"] == 3


@pytest.mark.parametrize("at", [1, 2, 4])
@pytest.mark.parametrize("where", ["predict", "write"])
def test_ctrl_c_exits_130_keeps_printed_lines_and_leaves_no_half_video(cli, clip, tmp_path, monkeypatch, at, where):
    from ptcli.inference.contract import Predictor
    from ptcli.video.writer import VideoWriter

    target, name = (Predictor, "predict") if where == "predict" else (VideoWriter, "write")
    original, calls = getattr(target, name), []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(target, name, interrupted)
    result = cli("super-resolve", clip, "-m", "bicubic", "-o", tmp_path, "--json")
    assert result.exit_code == 130
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["frame"] for row in printed if "frame" in row] == list(range(at - 1))
    assert list(tmp_path.iterdir()) == []


# --- tracking ------------------------------------------------------------------------------


def test_tracking_follows_two_moving_boxes_with_their_own_ids():
    from ptcli.video.frames import Frame
    from ptcli_detect.tracking import Tracking, make_tracker

    tracking = Tracking("bytetrack")
    tracker = make_tracker("bytetrack", 10)
    seen = []
    for index in range(12):
        rows = [{"label": "a", "category_id": 1, "score": 0.9, "bbox": [10 + 3 * index, 10, 20, 20]},
                {"label": "b", "category_id": 2, "score": 0.55 if index % 3 else 0.95, "bbox": [80, 5 + 4 * index, 16, 16]}]
        followed = tracking.follow(tracker, Frame("v", index, index / 10, None), rows)
        seen.append({row["label"]: row["track_id"] for row in followed})
    ids = {label: {frame[label] for frame in seen[2:]} for label in ("a", "b")}
    assert len(ids["a"]) == 1 and len(ids["b"]) == 1 and ids["a"] != ids["b"]
    assert min(ids["a"] | ids["b"]) >= 1


def _colour_detector(monkeypatch, dips: bool = True):
    """Detector.forward replaced by one that finds the clip's red and blue squares by colour
    (score 0.95; the blue one's dips to 0.4 every fourth frame), so that tracking has objects
    that are really there."""
    from ptcli_detect.detections import Detections
    from ptcli_detect.predictor import Detector

    calls = []

    def forward(self, images):
        found = []
        for image in images:
            calls.append(1)
            boxes, scores, labels = [], [], []
            for channel, score, label in ((0, 0.95, 1), (2, 0.4 if dips and len(calls) % 4 == 3 else 0.95, 2)):
                others = torch.cat([image[:channel], image[channel + 1:]])
                mask = (image[channel] > 0.8) & (others < 0.2).all(0)  # the background's blue is 0.38
                ys, xs = torch.nonzero(mask, as_tuple=True)
                if len(xs):
                    boxes.append([xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1])
                    scores.append(score)
                    labels.append(label)
            found.append(Detections.from_output({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                                 "scores": torch.tensor(scores), "labels": torch.tensor(labels, dtype=torch.int64)}))
        return found

    monkeypatch.setattr(Detector, "forward", forward)


HEAD_RUNNER = """
import sys, time
sys.path.insert(0, sys.argv[1])
import pytest
import test_video
from ptcli_detect.predictor import Detector
test_video._colour_detector(pytest.MonkeyPatch())
by_colour = Detector.forward
def slowly(self, images):  # frames still to come when the reader goes
    time.sleep(0.05)
    return by_colour(self, images)
Detector.forward = slowly
sys.argv = ["ptcli", *sys.argv[2:]]
from ptcli.cli import main
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("lines_read", [1, 7])
def test_a_reader_that_stops_early_leaves_the_mot_file_whole(cli, clip, random_detector, tmp_path, monkeypatch, lines_read):
    """`--json | head -1` used to leave the --mot file cut short: the printing ends with the pipe,
    the file the user asked for is written to the end, and no .partial stays."""
    import subprocess
    import sys

    _colour_detector(monkeypatch)
    model = ("-m", "fasterrcnn_mobilenet_v3_large_fpn", "--weights", random_detector, "--track", "bytetrack")
    whole = tmp_path / "whole.txt"
    assert cli("detect", clip, *model, "--mot", whole, "--json").exit_code == 0
    cut = tmp_path / "cut" / "clip.txt"
    process = subprocess.Popen([sys.executable, "-c", HEAD_RUNNER, str(Path(__file__).parent), "detect", str(clip),
                                *map(str, model), "--mot", str(cut), "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        read = [json.loads(process.stdout.readline()) for _ in range(lines_read)]
        process.stdout.close()  # as `head` does when it has its lines
        err = process.stderr.read()
        process.wait(timeout=120)
    finally:
        process.kill()
    assert [row["frame"] for row in read] == list(range(lines_read))
    assert process.returncode == 0, err
    assert "note: stdout was closed by its reader; the files go on being written" in err and "Traceback" not in err
    assert whole.read_text() and cut.read_text() == whole.read_text()
    assert sorted(p.name for p in cut.parent.iterdir()) == ["clip.txt"]


@pytest.mark.slow
@pytest.mark.parametrize("after", [0.0, 0.7])
def test_sigterm_during_tracking_leaves_the_mot_file_and_no_partial(random_detector, tmp_path, after):
    """SIGTERM (a `kill`, a container's stop) mid-video: exit 143, and the --mot file holds the
    frames tracked so far under its own name; no hidden .partial is left beside it."""
    import subprocess
    import sys

    from interrupts import sigterm_when

    clip = make_video(tmp_path / "long.mp4", frames=300, width=160, height=120, fps=25)
    mot = tmp_path / "tracks" / "long.txt"
    process = subprocess.Popen([sys.executable, "-m", "ptcli", "detect", str(clip), "-m", "fasterrcnn_mobilenet_v3_large_fpn",
                                "--weights", str(random_detector), "--track", "bytetrack", "--mot", str(mot)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = sigterm_when(process, (mot.parent / ".long.txt.partial").exists, after)
    assert process.returncode == 143 and err.strip().splitlines()[-1].endswith("terminated"), err[-2000:]
    assert sorted(path.name for path in mot.parent.iterdir()) == ["long.txt"]


@pytest.mark.parametrize("tracker", ["bytetrack", "botsort", "ocsort"])
def test_detect_track_writes_json_track_ids_and_the_same_tracks_as_mot(cli, clip, random_detector, tmp_path, monkeypatch, tracker):
    _colour_detector(monkeypatch)
    mot = tmp_path / "tracks" / "clip.txt"
    result = cli("detect", clip, "-m", "fasterrcnn_mobilenet_v3_large_fpn", "--weights", random_detector,
                 "--track", tracker, "--mot", mot, "--json")
    assert result.exit_code == 0, result.stderr
    rows = _lines(result)
    assert len(rows) == 20
    written = [f"{r['frame'] + 1},{d['track_id']},{d['bbox'][0]:.2f},{d['bbox'][1]:.2f},{d['bbox'][2]:.2f},"
               f"{d['bbox'][3]:.2f},{d['score']:.6f},{d['category_id']},-1,-1" for r in rows for d in r["detections"]]
    assert written and mot.read_text().splitlines() == written
    assert sorted(p.name for p in mot.parent.iterdir()) == ["clip.txt"]
    human = cli("detect", clip, "-m", "fasterrcnn_mobilenet_v3_large_fpn", "--weights", random_detector, "--track", tracker,
                "--end", "0.6")
    tracked = [line.split()[0] for line in human.stdout.splitlines() if line.startswith("  #")]
    assert tracked and all(token[1:].isdigit() for token in tracked)  # each followed object's id leads its line
    # One id per square once followed (frames 4-17: at 18 the blue square jumps back to the top).
    # Where the blue one's score dips to 0.4, under --threshold 0.5, BoT-SORT still follows it.
    followed = rows[4:18]
    ids = {label: {d["track_id"] for r in followed for d in r["detections"] if d["label"] == label} for label in ("person", "bicycle")}
    assert len(ids["person"]) == 1 == len(ids["bicycle"]) and min(ids["person"] | ids["bicycle"]) >= 1
    dips = [r for r in followed if r["frame"] % 4 == 2]
    blue_in_dips = [d for r in dips for d in r["detections"] if d["label"] == "bicycle"]
    if tracker != "botsort":  # ByteTrack is given scores down to 0.65, OC-SORT to 0.6
        assert blue_in_dips == []
    else:
        assert len(blue_in_dips) == len(dips) and {d["score"] for d in blue_in_dips} == {0.4}


@pytest.mark.parametrize("threshold", ["0.1", "0.5", "0.99"])
def test_the_tracker_is_given_its_own_floor_whatever_threshold_says(cli, clip, random_detector, monkeypatch, threshold):
    """--threshold neither lowers ByteTrack's floor (0.65: the blue square's 0.4 dips stay out)
    nor raises it (the 0.95 squares are followed): with --track the tracks are the same for any."""
    _colour_detector(monkeypatch)
    model = ("-m", "fasterrcnn_mobilenet_v3_large_fpn", "--weights", random_detector, "--track", "bytetrack")
    reference = [[(d["label"], d["track_id"]) for d in r["detections"]] for r in _lines(cli("detect", clip, *model, "--json"))]
    _colour_detector(monkeypatch)  # a fresh count of calls: the dips fall on the same frames
    result = cli("detect", clip, *model, "--threshold", threshold, "--json")
    assert result.exit_code == 0, result.stderr
    rows = _lines(result)
    assert all(d["score"] == pytest.approx(0.95) for r in rows for d in r["detections"])
    assert [[(d["label"], d["track_id"]) for d in r["detections"]] for r in rows] == reference
    assert sum(len(r) for r in reference) >= 25  # both squares followed through most of the 20 frames


def test_tracking_works_on_sliced_frames(cli, random_detector, tmp_path, monkeypatch):
    _colour_detector(monkeypatch, dips=False)  # forward sees tiles: a count of calls is no frame index
    wide = make_video(tmp_path / "wide.mp4", frames=12, width=192, height=96)
    common = ("detect", wide, "-m", "fasterrcnn_mobilenet_v3_large_fpn", "--weights", random_detector, "--track",
              "bytetrack", "--json")
    whole = _lines(cli(*common))
    sliced = cli(*common, "--slice", "64", "--batch-size", "4")
    assert sliced.exit_code == 0, sliced.stderr
    sliced = _lines(sliced)
    assert [r["frame"] for r in sliced] == list(range(12))
    for a, b in zip(whole[2:], sliced[2:]):
        assert [(d["label"], d["track_id"]) for d in a["detections"]] == [(d["label"], d["track_id"]) for d in b["detections"]]
        for d, e in zip(a["detections"], b["detections"]):
            assert d["bbox"] == pytest.approx(e["bbox"], abs=1.0)


@pytest.mark.parametrize(("arguments", "message"), [
    (("--mot", "t.txt"), "--mot writes tracks: add --track"),
    (("--track", "sort"), "--track must be one of bytetrack, botsort, ocsort"),
    (("--start", "1", "--end", "0.5"), "--end 0.5 is not after --start 1"),
])
def test_tracking_usage_errors(cli, clip, tmp_path, arguments, message):
    result = cli("detect", clip, *arguments)
    assert result.exit_code == 2 and message in result.stderr


def test_track_needs_videos_and_an_existing_mot_file_needs_overwrite(cli, clip, tmp_path):
    picture = tmp_path / "p.png"
    _decoded_frames(clip)[0].save(picture)
    images = cli("detect", picture, clip, "--track", "bytetrack")
    assert images.exit_code == 2 and "--track follows objects through videos" in images.stderr
    (tmp_path / "t.txt").write_text("")
    exists = cli("detect", clip, "--track", "bytetrack", "--mot", tmp_path / "t.txt")
    assert exists.exit_code == 2 and "exists; pass --overwrite" in exists.stderr


def test_bare_track_means_bytetrack_in_a_real_process(tmp_path):
    from ptcli.cli.app import fill_optional_values
    from ptcli.plugins.recipe import Command

    commands = {"detect": (Command("detect", "", optional_values={"--track": ("bytetrack", "botsort")}), None, None)}
    for argv, expected in [
        (["p", "detect", "v.mp4", "--track"], ["p", "detect", "v.mp4", "--track", "bytetrack"]),
        (["p", "detect", "--track", "v.mp4"], ["p", "detect", "--track", "bytetrack", "v.mp4"]),
        (["p", "detect", "--track", "botsort", "v.mp4"], ["p", "detect", "--track", "botsort", "v.mp4"]),
        (["p", "detect", "--", "--track"], ["p", "detect", "--", "--track"]),
        (["p", "classify", "--track"], ["p", "classify", "--track"]),
    ]:
        fill_optional_values(argv, commands)
        assert argv == expected


# --- MOTChallenge metrics ------------------------------------------------------------------


def _synthetic_tracking(seed: int) -> tuple[str, str]:
    """Ground truth of 4 objects over 40 frames and a tracker's output with misses, false
    positives, jitter and an identity switch."""
    rng = np.random.default_rng(seed)
    truth, found = [], []
    for frame in range(1, 41):
        for obj in range(1, 5):
            if obj == 4 and frame > 30:
                continue
            x, y = 20 * obj + 2 * frame, 15 * obj + frame
            truth.append(f"{frame},{obj},{x},{y},30,30,1,{obj % 3 + 1},1.0")
            if rng.random() < 0.1:
                continue  # a miss
            track = obj if not (obj == 2 and frame > 20) else 7  # a switch
            dx, dy = rng.normal(0, 3, 2)
            found.append(f"{frame},{track},{x + dx:.2f},{y + dy:.2f},30,30,0.9,1,-1,-1")
        if rng.random() < 0.2:
            found.append(f"{frame},99,{rng.uniform(0, 300):.2f},{rng.uniform(0, 300):.2f},20,20,0.4,1,-1,-1")
    truth.append("5,50,0,0,10,10,0,1,0.0")  # marked not to count
    return "\n".join(truth) + "\n", "\n".join(found) + "\n"


def _iou_distances(truth: list, found: list) -> np.ndarray:
    """1 - IoU of xywh boxes, NaN (no match) under IoU 0.5: motmetrics.distances.iou_matrix,
    which calls numpy's removed asfarray."""
    distances = np.full((len(truth), len(found)), np.nan)
    for i, (x, y, w, h) in enumerate(truth):
        for j, (u, v, p, q) in enumerate(found):
            inter = max(0.0, min(x + w, u + p) - max(x, u)) * max(0.0, min(y + h, v + q) - max(y, v))
            iou = inter / (w * h + p * q - inter)
            if iou >= 0.5:
                distances[i, j] = 1 - iou
    return distances


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eval_of_tracks_agrees_with_py_motmetrics(cli, tmp_path, seed):
    import motmetrics

    truth_text, found_text = _synthetic_tracking(seed)
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "gt.txt").write_text(truth_text)
    (tmp_path / "tracks.txt").write_text(found_text)
    result = cli("eval", tmp_path / "tracks.txt", tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)

    accumulator = motmetrics.MOTAccumulator(auto_id=False)
    rows = lambda text: [line.split(",") for line in text.splitlines() if line]  # noqa: E731
    truth = [r for r in rows(truth_text) if r[6] != "0"]
    found = rows(found_text)
    for frame in range(1, 41):
        gt = [r for r in truth if int(r[0]) == frame]
        tr = [r for r in found if int(r[0]) == frame]
        distances = _iou_distances([list(map(float, r[2:6])) for r in gt], [list(map(float, r[2:6])) for r in tr])
        accumulator.update([int(r[1]) for r in gt], [int(r[1]) for r in tr], distances, frameid=frame)
    summary = motmetrics.metrics.create().compute(accumulator, metrics=["mota", "idf1", "num_switches", "num_false_positives", "num_misses"])
    assert report["MOTA"] == pytest.approx(float(summary["mota"].iloc[0]), abs=1e-6)
    assert report["IDF1"] == pytest.approx(float(summary["idf1"].iloc[0]), abs=1e-6)
    assert report["id_switches"] == int(summary["num_switches"].iloc[0]) >= 1
    assert report["false_positives"] == int(summary["num_false_positives"].iloc[0]) > 0
    assert report["misses"] == int(summary["num_misses"].iloc[0]) > 0
    assert 0 < report["HOTA"] < 1
    human = cli("eval", tmp_path / "tracks.txt", tmp_path / "gt" / "gt.txt")
    assert f"MOTA       {report['MOTA'] * 100:6.2f}" in human.stdout


def test_eval_of_a_malformed_tracks_file_is_one_line(cli, tmp_path):
    (tmp_path / "gt.txt").write_text("1,1,0,0,10,10,1,1,1\n")
    (tmp_path / "bad.txt").write_text("1,1,0,0,10,10,1\nframe,id\n")
    result = cli("eval", tmp_path / "bad.txt", tmp_path / "gt.txt")
    assert result.exit_code == 1 and "bad.txt, line 2: not a MOTChallenge line" in result.stderr
    missing = cli("eval", tmp_path / "bad.txt", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "no such file" in missing.stderr


# --- a third party's image recipe ----------------------------------------------------------


def _mean_colour_plugin():
    """An image recipe that is only a Predictor (the mean colour of each input): its derived
    command reads videos with no code of its own."""
    import types

    from ptcli import hookimpl
    from ptcli.inference.contract import IMAGE, Predictor, Sample
    from ptcli.plugins.recipe import Command, Recipe

    class Means(Predictor):
        kind = IMAGE

        @classmethod
        def load(cls, source, device):
            predictor = cls()
            predictor.device, predictor.title = device, "means"
            return predictor

        def decode(self, item):
            from ptcli.vision.imaging import read_image, to_pixels

            return Sample(to_pixels(read_image(item)))

        def forward(self, batch):
            return batch.mean(dim=(2, 3))

        def postprocess(self, row, meta):
            return {"mean": [round(v, 4) for v in row.tolist()]}

    module = types.ModuleType("video_means_plugin")
    recipe = Recipe(name="means", help="", predictor=Means, commands=(Command(name="means", help="Mean colour."),))
    module.register_recipes = hookimpl(lambda register: register(recipe))
    return module


def test_a_third_party_image_recipe_reads_videos_through_its_derived_command(cli, clip):
    plugin = _mean_colour_plugin()
    result = cli("means", clip, "--vid-stride", "5", "--json", "--batch-size", "3", plugins=[plugin])
    assert result.exit_code == 0, result.stderr
    rows = _lines(result)
    assert [r["frame"] for r in rows] == [0, 5, 10, 15]
    frames = _decoded_frames(clip)
    for row in rows:
        expected = np.asarray(frames[row["frame"]], dtype=np.float64).mean(axis=(0, 1)) / 255
        assert row["mean"] == pytest.approx(expected.tolist(), abs=1e-4)
    assert "--vid-stride" in cli("means", "--help", plugins=[plugin]).stdout
