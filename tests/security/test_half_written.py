"""Nothing half-written: a video's -o leaves no file behind when its input turns out damaged,
or when SIGTERM arrives at any moment of the run (a container stopping, a `kill`); SIGTERM is
exit 143 with one line, as Ctrl-C is 130."""

import subprocess
import sys
from pathlib import Path

import pytest

from interrupts import sigterm_when
from video_files import make_video, truncate


def test_a_damaged_video_leaves_no_output_file(cli, tmp_path):
    """Cut short after its index (faststart): the frames before the damage decode and are
    written, then the damage is met; the half-made output is removed, not kept."""
    clip = truncate(make_video(tmp_path / "in" / "clip.mp4", frames=60, width=160, height=120), 0.6)
    out = tmp_path / "out"
    result = cli("super-resolve", clip, "-m", "bicubic", "-o", out, "--json")
    assert result.exit_code == 1, result.output
    assert "truncated" in result.stdout or "cannot read" in result.stdout
    assert not out.exists() or list(out.iterdir()) == [], list(out.iterdir())


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("long") / "clip.mp4", frames=400, width=320, height=240, fps=25)


@pytest.mark.slow
@pytest.mark.parametrize("after", [0.0, 0.3, 0.8, 1.5])
def test_sigterm_during_a_video_output_leaves_no_file(long_clip, tmp_path, after):
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "ptcli", "super-resolve", str(long_clip), "-m", "bicubic",
                                "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = sigterm_when(process, lambda: out.exists() and any(out.glob(".*.partial")), after)
    assert process.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1].endswith("terminated"), err[-2000:]
    assert list(out.iterdir()) == [], list(out.iterdir())


def _can_mount() -> str | None:
    import shutil

    if shutil.which("unshare") is None:
        return "unshare is not installed"
    done = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return None if done.returncode == 0 else "cannot mount a small tmpfs here (needs root and a mount namespace)"


@pytest.mark.slow
@pytest.mark.parametrize("size", ["4k", "300k", "700k"])
def test_a_full_disk_during_training_says_so_in_one_line(tmp_path, size):
    """A run folder on a file system that fills up (a tmpfs of ``size``, in a mount namespace of
    its own): the first write that does not fit, whichever it is, ends the run with one line."""
    from conftest import colour_simplenet_config, make_imagefolder

    why = _can_mount()
    if why:
        pytest.skip(why)
    root = make_imagefolder(tmp_path / "colours", {"train": 12, "val": 4})
    config = colour_simplenet_config(tmp_path, root, "full", epochs=2)
    runs = tmp_path / "runs"
    runs.mkdir()
    done = subprocess.run(["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size={size} tmpfs "{runs}" && '
                           f'exec "{sys.executable}" -m ptcli train "{config}"'], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no space left on device: ") and str(runs) in last, done.stderr[-2000:]
    assert "enforce fail" not in done.stderr


@pytest.mark.slow
def test_a_full_disk_during_a_video_output_leaves_no_file(long_clip, tmp_path):
    """The output folder on a file system that fills up mid-video: one line, exit 1, nothing
    left in the folder (the .partial file included)."""
    why = _can_mount()
    if why:
        pytest.skip(why)
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run(["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size=256k tmpfs "{out}" && '
                           f'"{sys.executable}" -m ptcli super-resolve "{long_clip}" -m bicubic -o "{out}" >/dev/null; '
                           f'code=$?; echo "left:"; ls -A "{out}"; exit $code'], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stdout.strip() == "left:", f"left in the folder: {done.stdout}"
    assert "no space left on device" in done.stderr.lower(), done.stderr[-2000:]
