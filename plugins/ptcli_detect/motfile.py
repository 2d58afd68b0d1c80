"""`detect --track --mot FILE`: the tracks as MOTChallenge text, written as the results pass."""

from __future__ import annotations

from pathlib import Path

from ptcli.errors import UsageError


def refuse_existing(path: Path, overwrite: bool) -> None:
    """--mot FILE, checked before any model loads: a file (not a folder), an existing one only
    with --overwrite, in a folder that can be written. That folder may be made, but only in one
    that exists: a mistyped path never grows a chain of folders (as root, anywhere)."""
    from ptcli.inference.inputs import output_folder

    if path.is_dir():
        raise UsageError(f"--mot {path} is a folder; --mot names the file the tracks are written to")
    if path.exists() and not overwrite:
        raise UsageError(f"--mot {path} exists; pass --overwrite to replace it")
    folder = path.parent if str(path.parent) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--mot {path}: its folder {folder} is a file; name a file in a folder")
    if not folder.exists() and not folder.parent.is_dir():
        raise UsageError(f"--mot {path}: its folder {folder} is not in an existing folder ({folder.parent} does not "
                         "exist); make it first, or name a file elsewhere")
    output_folder(folder, "the MOTChallenge file", flag="--mot")


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

    from ptcli.output import files_under_way

    path.parent.mkdir(exist_ok=True)  # one level, in a folder that exists (refuse_existing)
    with files_under_way(), open(path.with_name(f".{path.name}.partial"), "w") as handle:
        try:
            yield from lines(handle)
        finally:
            handle.close()
            Path(handle.name).replace(path)
