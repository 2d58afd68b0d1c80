"""Tiny generated videos for the tests: coloured squares moving over a gradient, with an
optional tone as audio, written with PyAV (the reader's own library)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def frame_pixels(index: int, width: int, height: int) -> np.ndarray:
    """Frame ``index``: a gradient with a red square moving right and a blue one moving down."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([(x * 255 // max(1, width - 1)), (y * 255 // max(1, height - 1)),
                       np.full_like(x, 96)], axis=-1).astype(np.uint8)
    side = max(4, min(width, height) // 4)
    left = (index * 3) % max(1, width - side)
    top = (index * 2) % max(1, height - side)
    pixels[4:4 + side, left:left + side] = (230, 30, 30)
    pixels[top:top + side, 4:4 + side] = (30, 30, 230)
    return pixels


def make_video(path: Path, *, frames: int = 20, width: int = 64, height: int = 48, fps: int = 10,
               audio: bool = False, codec: str | None = None, faststart: bool = True) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart and path.suffix in (".mp4", ".mov") else {}
    codec = codec or {".webm": "libvpx-vp9", ".avi": "mpeg4"}.get(path.suffix, "libx264")
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        sound = None
        if audio:
            sound = container.add_stream("aac" if path.suffix != ".webm" else "libopus", rate=48000)
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_pixels(index, width, height), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None:
            rate, samples = 48000, int(48000 * frames / fps)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / rate)).astype(np.float32)
            for begin in range(0, samples, 1024):
                chunk = tone[begin:begin + 1024]
                piece = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                piece.sample_rate, piece.pts = rate, begin
                container.mux(sound.encode(piece))
            container.mux(sound.encode(None))
    return path


def truncate(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path
