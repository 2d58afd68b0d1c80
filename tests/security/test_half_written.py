"""Nothing half-written: a video's -o leaves no file behind when its input turns out damaged,
or when SIGTERM arrives at any moment of the run (a container stopping, a `kill`); SIGTERM is
exit 143 with one line, as Ctrl-C is 130."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from video_files import make_video, truncate


def test_a_damaged_video_leaves_no_output_file(cli, tmp_path):
    clip = truncate(make_video(tmp_path / "in" / "clip.mp4", frames=60, faststart=False), 0.6)
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
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out.exists() and any(out.glob(".*.partial"))):
            assert process.poll() is None, process.communicate()
            time.sleep(0.02)
        assert any(out.glob(".*.partial")), "the output never started"
        time.sleep(after)
        assert process.poll() is None, "the run ended before SIGTERM: make the clip longer"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1].endswith("terminated"), err[-2000:]
    assert list(out.iterdir()) == [], list(out.iterdir())
