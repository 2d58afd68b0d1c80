"""Reading video on PyAV (FFmpeg's libraries, bundled in its wheel: nothing to install beside
pip; torchcodec decodes this repository's test video 2.7 times as fast but needs a system
FFmpeg, and decoding is not what limits a model's frame rate). Frames come one at a time, so
memory does not grow with the video's length.

Damage is reported where it is met: the frames before it are given, then an InputError says
what happened. A file whose container announces more frames than could be decoded is
truncated; a live source (a webcam, an RTSP stream) that stops has dropped.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

from ptcli.errors import InputError

from ptcli.vision.imaging import max_pixels

from .frames import Frame
from .sources import FILE, LIVE, SEQUENCE, WEBCAM, VideoSource

#: Seconds a network source may take to open, and to deliver its next packet.
NETWORK_TIMEOUT = (10.0, 10.0)


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    #: Frames the container announces (None when it does not say: live sources, some mkv).
    frames: int | None
    duration: float | None
    codec: str
    has_audio: bool


def _reason(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return text.split(": '", 1)[0].strip() or type(error).__name__


class VideoReader:
    """An open video source: ``info``, then ``frames()`` once. Use it as a context manager."""

    def __init__(self, source: VideoSource) -> None:
        self.source = source
        self.container = _open(source)
        try:
            streams = self.container.streams.video
            if not streams:
                raise InputError("it has no video stream: not a video, or a file cut short before its index"
                                 if source.kind == FILE else "it has no video stream")
            self.stream = stream = streams[0]
            stream.thread_type = "AUTO"  # FFmpeg's own threads decode ahead
            context = stream.codec_context
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(25)
            duration = float(stream.duration * stream.time_base) if stream.duration else (
                self.container.duration / 1_000_000 if self.container.duration else None)
            self.info = VideoInfo(width=context.width, height=context.height, fps=Fraction(rate),
                                  frames=stream.frames or None, duration=duration, codec=context.name,
                                  has_audio=bool(self.container.streams.audio))
            # Frames are held to the pixel limit of images, from the stream's header before any
            # is decoded; FFmpeg's decoder is opened with the same max_pixels (it then refuses
            # a larger frame itself), and each decoded frame is checked again.
            self.pixel_limit = max_pixels()
            check_frame_size(context.width, context.height, self.pixel_limit)
            context.options = {**dict(context.options or {}), "max_pixels": str(self.pixel_limit)}
            # FFmpeg's frame threads each hold a frame: no more of them than the budget of held
            # frames allows (ptcli.video.stream.HELD_PIXELS).
            from .stream import frames_held

            if context.width and context.height and frames_held(context.width * context.height) < 8:
                stream.thread_type, stream.thread_count = "SLICE", 1
        except BaseException:
            self.container.close()
            raise

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    def frames(self, *, stride: int = 1, start: float | None = None, end: float | None = None) -> Iterator[Frame]:
        """Every ``stride``-th frame from ``start`` to before ``end`` (seconds), as Frames in
        order; an InputError after the last good frame if the video is damaged or dropped."""
        import av

        stream, fps = self.stream, self.info.fps
        origin = stream.start_time
        if start:
            first_pts = int(start / stream.time_base) + (origin or 0)
            try:
                self.container.seek(first_pts, stream=stream, backward=True)
            except av.error.FFmpegError:
                pass  # not seekable (a pipe, a live source): frames before start are decoded and skipped
        index = decoded = 0
        previous_index = first_index = None
        try:
            for frame in self.container.decode(stream):
                decoded += 1
                if origin is None:
                    origin = frame.pts or 0
                time = float((frame.pts - origin) * stream.time_base) if frame.pts is not None else decoded / float(fps)
                if start and time < start - 0.5 / float(fps):
                    continue
                index = (round(time * float(fps)) if start else 0) if previous_index is None else previous_index + 1
                previous_index = index
                if first_index is None:
                    first_index = index
                if end is not None and time >= end:
                    return
                if (index - first_index) % stride == 0:
                    check_frame_size(frame.width, frame.height, self.pixel_limit)
                    yield Frame(str(self.source), index, time, _to_image(frame))
        except av.error.FFmpegError as error:
            raise InputError(self._damaged(previous_index, _reason(error))) from None
        except OSError as error:
            raise InputError(self._damaged(previous_index, _reason(error))) from None
        if previous_index is None:
            if start:
                raise InputError(f"no frames at or after --start {start:g} s (the video lasts {self._length()})")
            raise InputError("no frames: the video is empty or damaged")
        if self.source.live:
            raise InputError(f"the stream ended after frame {previous_index}; it dropped or was closed")
        expected = self.info.frames
        if expected and not start and index + 1 < expected:
            raise InputError(self._damaged(previous_index, f"the container announces {expected} frames; the file is truncated"))

    def _damaged(self, last: int | None, reason: str) -> str:
        where = "before its first frame" if last is None else f"after frame {last}"
        return f"cannot read the video {where}: {reason}"

    def _length(self) -> str:
        return f"{self.info.duration:.2f} s" if self.info.duration else "an unknown time"


def _to_image(frame):
    """The frame as an RGB PIL image, as PyAV's ``to_image`` makes it but at half its peak memory
    (it copies the converted frame twice: 1.1 GB for a 9400x9400 frame, 0.6 GB here)."""
    from PIL import Image

    rgb = frame.reformat(format="rgb24")
    plane = rgb.planes[0]
    return Image.frombuffer("RGB", (rgb.width, rgb.height), plane, "raw", "RGB", plane.line_size, 1)


def check_frame_size(width: int, height: int, limit: int) -> None:
    if width * height > limit:
        raise InputError(f"its frames are {width}x{height} = {width * height / 1e6:.0f} million pixels, above the "
                         f"limit of {limit / 1e6:.0f} million; set PTCLI_MAX_IMAGE_PIXELS to allow it")


def _open(source: VideoSource):
    """The PyAV container of ``source``; InputError (one line) when it cannot be opened."""
    import av

    argument, kwargs = source.argument, {}
    if source.kind == SEQUENCE:
        kwargs["format"] = "image2"
    elif source.kind == WEBCAM:
        if sys.platform.startswith("linux"):
            argument, kwargs["format"] = f"/dev/video{source.argument}", "v4l2"
        elif sys.platform == "darwin":
            kwargs["format"] = "avfoundation"
        else:
            raise InputError("webcams are read on Linux (v4l2) and macOS (avfoundation); give a file or a stream URL")
    elif source.kind == LIVE:
        kwargs["timeout"] = NETWORK_TIMEOUT
        if argument.lower().startswith(("rtsp://", "rtsps://")):
            kwargs["options"] = {"rtsp_transport": "tcp"}
    try:
        return av.open(argument, "r", **kwargs)
    except FileNotFoundError:
        what = "no such camera" if source.kind == WEBCAM else "no such file"
        raise InputError(what) from None
    except (av.error.FFmpegError, OSError, ValueError) as error:
        if source.kind == FILE:
            raise InputError(f"cannot read it as a video ({_reason(error)}); is it a complete video file?") from None
        raise InputError(f"cannot open it ({_reason(error)})") from None
