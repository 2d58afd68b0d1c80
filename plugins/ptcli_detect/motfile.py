"""`detect --track --mot FILE`: the tracks as MOTChallenge text, written as the results pass."""

from __future__ import annotations

from pathlib import Path

from ptcli.errors import UsageError


def refuse_existing(path: Path, overwrite: bool) -> None:
    from ptcli.inference.inputs import output_folder

    if path.exists() and not overwrite:
        raise UsageError(f"--mot {path} exists; pass --overwrite to replace it")
    output_folder(path.parent if str(path.parent) else Path("."), "the MOTChallenge file")


def write_mot(results, path: Path):
    """The results, passing through, with every tracked detection written to ``path`` as it
    comes (the file is complete, under its name, when the run ends, even if a video broke off)."""
    from ptcli.inference.results import Failed
    from ptcli.video.frames import Frame
    from ptcli.video.mot import mot_line

    def lines(handle):
        for item, result in results:
            if isinstance(item, Frame) and not isinstance(result, Failed):
                handle.writelines(mot_line(item.index, row) for row in result["detections"])
                handle.flush()
            yield item, result

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.partial"), "w") as handle:
        try:
            yield from lines(handle)
        finally:
            handle.close()
            Path(handle.name).replace(path)
