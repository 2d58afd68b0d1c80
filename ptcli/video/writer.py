"""Writing video on PyAV, a frame at a time: H.264 in .mp4/.mov/.mkv, VP9 in .webm, MPEG-4 in
.avi. The source's audio is copied (its packets, not re-encoded) where the container can hold
its codec. The file appears under its name only once it is complete."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

from ptcli.output import warn

#: container ending -> (FFmpeg format, video codec, codec options)
_FORMATS = {
    ".mp4": ("mp4", "libx264", {"preset": "veryfast", "crf": "20"}),
    ".m4v": ("mp4", "libx264", {"preset": "veryfast", "crf": "20"}),
    ".mov": ("mov", "libx264", {"preset": "veryfast", "crf": "20"}),
    ".mkv": ("matroska", "libx264", {"preset": "veryfast", "crf": "20"}),
    ".webm": ("webm", "libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0"}),
    ".avi": ("avi", "mpeg4", {"qscale": "3"}),
}
#: Audio codecs each container holds (mkv holds any).
_AUDIO = {"mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}, "mov": {"aac", "mp3", "alac", "ac3", "pcm_s16le"},
          "webm": {"opus", "vorbis"}, "avi": {"mp3", "ac3", "pcm_s16le", "pcm_u8"}}


def output_ending(source_ending: str) -> str:
    """The written video's ending: the source's where ptcli writes that container, else .mp4."""
    return source_ending.lower() if source_ending.lower() in _FORMATS else ".mp4"


class VideoWriter:
    """``write(image)`` per frame at ``fps``; ``close()`` finishes the file (and copies the audio
    of ``audio_from`` between ``start`` and ``end`` seconds); ``abort()`` leaves nothing."""

    def __init__(self, destination: Path, fps: Fraction, *, audio_from: str | None = None,
                 start: float | None = None, end: float | None = None) -> None:
        import av

        self.destination = Path(destination)
        self.partial = self.destination.with_name(f".{self.destination.name}.partial")
        self.format, self.codec, self.options = _FORMATS[output_ending(self.destination.suffix)]
        self.fps, self.start, self.end = Fraction(fps).limit_denominator(1001 * 1000), start or 0.0, end
        self.destination.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.partial), "w", format=self.format)
        self.stream = None
        self.count = 0
        self.audio_in = self.audio_out = None
        self.audio_from = audio_from

    def _add_audio(self, path: str) -> None:
        import av

        source = av.open(path)
        if not source.streams.audio:
            source.close()
            return
        audio = source.streams.audio[0]
        allowed = _AUDIO.get(self.format)
        if allowed is not None and audio.codec_context.name not in allowed:
            warn(f"{self.destination.name}: the audio ({audio.codec_context.name}) is not copied, "
                 f"a {self.destination.suffix} file cannot hold it; write .mkv to keep it")
            source.close()
            return
        self.audio_in, self.audio_out = source, self.container.add_stream_from_template(audio)

    def write(self, image) -> None:
        """One RGB frame (a PIL image or an HxWx3 uint8 array); the first sets the size."""
        import av
        import numpy as np

        pixels = np.asarray(image, dtype=np.uint8)
        if self.stream is None:
            self._open_stream(pixels.shape[1], pixels.shape[0])
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels[..., :3]), format="rgb24")
        frame.pts = self.count
        self.count += 1
        self.container.mux(self.stream.encode(frame))

    def _open_stream(self, width: int, height: int) -> None:
        stream = self.container.add_stream(self.codec, rate=self.fps, options=dict(self.options))
        stream.width, stream.height = width, height
        # 4:2:0 halves the colour planes, which needs even sides; an odd side keeps them whole.
        stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        stream.codec_context.time_base = 1 / self.fps
        self.stream = stream
        if self.audio_from is not None:  # after the video, so that players list the video first
            self._add_audio(self.audio_from)

    def close(self) -> Path:
        try:
            if self.stream is not None:
                self.container.mux(self.stream.encode(None))
                self._copy_audio()
        except BaseException:
            self.abort()
            raise
        self.container.close()
        if self.audio_in is not None:
            self.audio_in.close()
        if self.stream is None:  # nothing was written: no file
            self.partial.unlink(missing_ok=True)
            return self.destination
        os.replace(self.partial, self.destination)
        return self.destination

    def _copy_audio(self) -> None:
        if self.audio_in is None:
            return
        stream = self.audio_in.streams.audio[0]
        base = stream.time_base
        origin = stream.start_time or 0
        shift = int(self.start / base) + origin if self.start else origin
        last = None if self.end is None else int(self.end / base) + origin
        if self.start:
            self.audio_in.seek(shift, stream=stream, backward=True)
        for packet in self.audio_in.demux(stream):
            if packet.pts is None or packet.dts is None:
                continue
            if packet.pts < shift:
                continue
            if last is not None and packet.pts >= last:
                break
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = self.audio_out
            self.container.mux(packet)

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # already broken: what matters is that no partial file stays
            pass
        if self.audio_in is not None:
            self.audio_in.close()
        self.partial.unlink(missing_ok=True)
