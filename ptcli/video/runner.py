"""A command's video inputs through its Predictor: each source read, its frames predicted in
order (ptcli.video.stream), optionally changed on the way (a tracker), and with -o written as a
video of the frames' pictures (``Predictor.render``). Results are (Frame, fields) pairs that
ptcli.inference.results prints like any other; a source that cannot be read, or breaks off, is
one Failed result after the frames it gave."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptcli.errors import InputError, UsageError
from ptcli.inference.contract import Predictor
from ptcli.inference.results import Failed

from .sources import FILE, VideoSource


@dataclass(frozen=True)
class VideoOptions:
    """--vid-stride, --start and --end."""

    stride: int = 1
    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise UsageError(f"--end {self.end:g} is not after --start {self.start:g}")


def destination_for(source: VideoSource, output: Path, suffix: str) -> Path:
    from .writer import output_ending

    ending = Path(source.argument).suffix if source.kind == FILE else ".mp4"
    return Path(output) / f"{source.stem}{suffix}{output_ending(ending)}"


def refuse_existing_videos(sources: list[VideoSource], output: Path, suffix: str) -> None:
    """-o DIR already holding the video a source would be written to: a usage error naming it."""
    there = [path for path in (destination_for(source, output, suffix) for source in sources) if path.exists()]
    if there:
        more = f" (and {len(there) - 1} more)" if len(there) > 1 else ""
        raise UsageError(f"-o {output}: {there[0]} exists{more}; pass --overwrite to replace it")


def video_results(predictor: Predictor, sources: list[VideoSource], options: VideoOptions, *, batch_size: int,
                  output: Path | None = None, suffix: str = "", overwrite: bool = False,
                  annotate: Callable[[Any, Iterator], Iterator] | None = None,
                  render: Callable[[Any, dict], Any] | None = None, description: str = "frames") -> Iterator[tuple[Any, Any]]:
    """(Frame, fields) per frame of every source in turn, or (source, Failed). ``annotate(info,
    results)`` changes a source's results in order (tracking); ``render(image, fields)`` draws
    a written frame (default: the predictor's ``render``)."""
    for source in sources:
        start = getattr(render, "start", None)
        if start is not None:  # a drawing that keeps state (trails) starts afresh
            start()
        yield from _one_video(predictor, source, options, batch_size=batch_size, output=output, suffix=suffix,
                              overwrite=overwrite, annotate=annotate, render=render or predictor.render,
                              description=description)


def _one_video(predictor, source, options, *, batch_size, output, suffix, overwrite, annotate, render, description):
    from ptcli.inference.timings import stage, timed_iteration
    from ptcli.output import progress

    from .reader import VideoReader
    from .stream import predict_frames

    destination = None if output is None else destination_for(source, output, suffix)
    if destination is not None and destination.exists() and not overwrite:
        yield source, Failed(f"{destination} exists; pass --overwrite to replace it")
        return
    try:
        with stage("decode"):  # opening the container, reading its header
            reader = VideoReader(source)
    except InputError as error:
        yield source, Failed(str(error))
        return
    writer = None
    with reader, progress() as bar:
        info = reader.info
        task = bar.add_task(f"{description} {source.stem}", total=_expected(info, options))
        predicted = predict_frames(predictor, reader.frames(stride=options.stride, start=options.start, end=options.end),
                                   batch_size=batch_size, wait_for_batch=not source.live,
                                   frame_pixels=info.width * info.height)
        results = predicted if annotate is None else annotate(info, predicted)
        try:
            # a tracker's work between the frames' results is postprocessing
            for frame, fields in (results if annotate is None else timed_iteration("postprocess", results)):
                bar.advance(task)
                if isinstance(fields, Failed):
                    with stage("write"):
                        yield frame, fields
                    continue
                if destination is not None:
                    with stage("encode"):
                        writer = writer or _writer(destination, source, info, options)
                        picture = render(frame.image, fields)
                        if picture is None:
                            raise UsageError(f"{predictor.title or 'this recipe'} draws no pictures; drop -o for videos")
                        writer.write(picture)
                fields = {key: value for key, value in fields.items() if key != "png"}
                with stage("write"):
                    yield frame, fields if destination is None else {**fields, "output": str(destination)}
        except InputError as error:
            if writer is not None and not source.live:  # a damaged file's output is not kept half-made
                writer.abort()
                writer = None
            yield source, Failed(str(error))
        except BaseException:
            # Ctrl-C ends a live source's recording as the user meant it to; a file's half is removed.
            if writer is not None and not source.live:
                writer.abort()
                writer = None
            raise
        finally:
            with stage("decode"):
                results.close()
                predicted.close()  # the reader thread stops before the container closes under it
            if writer is not None:
                with stage("encode"):  # the encoder's last frames
                    writer.close()


def _writer(destination: Path, source: VideoSource, info, options: VideoOptions):
    from .writer import VideoWriter

    audio = source.argument if source.kind == FILE and info.has_audio else None
    return VideoWriter(destination, info.fps / options.stride, audio_from=audio, start=options.start, end=options.end)


def _expected(info, options: VideoOptions) -> int | None:
    """Frames the run will give, for the progress bar (None when the source does not say)."""
    if not info.frames:
        return None
    first = round((options.start or 0) * float(info.fps))
    last = info.frames if options.end is None else min(info.frames, round(options.end * float(info.fps)))
    return max(0, -(-(last - first) // options.stride))
