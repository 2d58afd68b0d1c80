"""Which command-line inputs are videos: files by their ending, image sequences by a printf
pattern (``frames/%05d.png``), live streams by their URL, webcams by their index."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
_SEQUENCE = re.compile(r"%0?\d*d")
FILE, SEQUENCE, LIVE, WEBCAM = "file", "sequence", "live", "webcam"


@dataclass(frozen=True)
class VideoSource:
    """A video input as the user named it (``argument``) and what kind of source it is."""

    argument: str
    kind: str

    def __str__(self) -> str:
        return self.argument

    @property
    def live(self) -> bool:
        """A source that has no end of its own: when it stops, it dropped."""
        return self.kind == WEBCAM or (self.kind == LIVE and not self.argument.lower().startswith(("http://", "https://")))

    @property
    def stem(self) -> str:
        """A name for files made from this source (``clip`` for clip.mp4)."""
        if self.kind == FILE:
            return Path(self.argument).stem
        if self.kind == SEQUENCE:
            name = _SEQUENCE.sub("", Path(self.argument).stem).strip("_-. ")
            return name or Path(self.argument).parent.name or "frames"
        if self.kind == WEBCAM:
            return f"webcam{self.argument}"
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.argument.split("://", 1)[1]).strip("_")[:60] or "stream"


def video_source(argument: str) -> VideoSource | None:
    """The argument as a VideoSource, or None when it names images."""
    if argument.isdigit() and not Path(argument).exists():
        return VideoSource(argument, WEBCAM)
    if argument.lower().startswith(LIVE_SCHEMES):
        return VideoSource(argument, LIVE)
    if _SEQUENCE.search(Path(argument).name):
        return VideoSource(argument, SEQUENCE)
    if Path(argument).suffix.lower() in VIDEO_EXTENSIONS:
        return VideoSource(argument, FILE)
    return None


def split_inputs(arguments: list[str], image_extensions) -> tuple[list[Path], list[VideoSource]]:
    """Command-line inputs as image files (folders and globs expanded, as
    ptcli.inference.inputs.expand_inputs does) and video sources, each in the order given. Video
    files inside a folder or a glob are videos too. A missing file is a usage error here."""
    from ptcli.errors import UsageError
    from ptcli.inference.inputs import expand_inputs

    from ptcli.inference.inputs import Listed
    from ptcli.storage import is_url

    images: list[Path] = []
    videos: list[VideoSource] = []
    for argument in arguments:
        if is_url(str(argument)):
            for found in expand_inputs([argument], tuple(image_extensions) + VIDEO_EXTENSIONS):
                if Path(str(found)).suffix.lower() in VIDEO_EXTENSIONS:
                    raise UsageError(f"videos are read from files and streams, not from object storage: {found}")
                images.append(found)
            continue
        if isinstance(argument, Listed) and video_source(str(argument)) is None:
            images.append(argument.value)
            continue
        source = video_source(argument)
        if source is not None and source.kind != FILE:
            if source.kind == SEQUENCE and not _sequence_exists(argument):
                raise UsageError(f"no files match the image sequence {argument}")
            videos.append(source)
            continue
        for path in expand_inputs([argument], tuple(image_extensions) + VIDEO_EXTENSIONS):
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                videos.append(VideoSource(str(path), FILE))
            else:
                images.append(path)
    return images, videos


def _sequence_exists(pattern: str) -> bool:
    path = Path(pattern).expanduser()
    glob = _SEQUENCE.sub("*", path.name)
    return path.parent.is_dir() and any(path.parent.glob(glob))
