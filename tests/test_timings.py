"""--timings: where a run's time went, stage by stage, adding up to the wall time measured
outside the process."""

import json
import subprocess
import sys
import time

import pytest

from ptcli.inference import timings
from ptcli.inference.timings import STAGES

KEYS = [key for key, _ in STAGES]


def _timed_run(args, cwd):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ptcli", *map(str, args)], capture_output=True, text=True, cwd=cwd)
    return done, time.perf_counter() - start


def test_the_stages_of_a_real_run_add_up_to_its_wall_time(shared_data, tmp_path):
    """The default model over the shared photos and a video: the named stages (start-up to
    writing, "other" left out) add up to within 5% of the wall time the test measures around
    the process, and each stage the run went through took time."""
    photos, video = shared_data / "imagefolder_photos" / "val", shared_data / "video" / "shapes.mp4"
    if not video.is_file():
        pytest.skip(f"the shared video is missing: {video}")
    done, wall = _timed_run(["classify-image", photos, video, "--timings", "--json", "-k", "1", "--device", "cpu"],
                            tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    report = json.loads(lines[-1])["timings"]
    assert list(report) == [*KEYS, "other", "total"]
    rows = [json.loads(line) for line in lines[:-1]]
    assert len(rows) == 28 + 150 and all("predictions" in row for row in rows)  # every result, then the timings
    named = sum(report[key] for key in KEYS)
    assert abs(named - wall) <= 0.05 * wall, (report, wall)
    assert report["total"] <= wall and report["other"] <= 0.05 * wall, (report, wall)
    for key in ("startup", "load", "decode", "forward", "postprocess", "write"):
        assert report[key] > 0, (key, report)
    assert report["encode"] == 0  # nothing was written
    assert report["forward"] > report["postprocess"]


def test_timings_are_a_line_on_stderr_and_leave_the_results_as_they_were(cli, shared_data):
    cat = shared_data / "images" / "cat.jpg"
    plain = cli("classify-image", cat, "-k", "2", "--device", "cpu")
    timed = cli("classify-image", cat, "-k", "2", "--device", "cpu", "--timings")
    assert plain.exit_code == timed.exit_code == 0, timed.stderr
    assert timed.stdout == plain.stdout
    said = [line for line in timed.stderr.splitlines() if line.startswith("timings: ")]
    assert len(said) == 1 and "model load" in said[0] and "forward" in said[0] and said[0].endswith(" s in all"), said


def test_a_written_video_times_its_encoding_and_a_failed_input_still_gets_its_timings(cli, tmp_path, shared_data):
    from video_files import make_video

    clip = make_video(tmp_path / "clip.mp4", frames=12)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    result = cli("super-resolve", clip, broken, "-m", "bicubic", "-o", tmp_path / "out", "--timings", "--json")
    assert result.exit_code == 1  # the broken input
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert "error" in lines[0] and len(lines) == 1 + 12 + 1
    report = lines[-1]["timings"]
    assert report["encode"] > 0 and report["forward"] > 0 and report["decode"] > 0
    assert (tmp_path / "out" / "clip_x4.mp4").is_file()


def test_timings_with_the_ray_engine_is_a_usage_error(cli, shared_data):
    result = cli("classify-image", shared_data / "images" / "cat.jpg", "--engine", "ray", "--timings")
    assert result.exit_code == 2 and "--timings" in result.stderr and "--engine ray" in result.stderr


def test_nested_stages_count_once_each_and_other_threads_are_not_timed():
    """An inner stage's time is its own, not its outer stage's too; a stage on another thread
    (a video's reader) is not timed, as the command's thread sees it as a wait."""
    import threading

    run = timings.begin()
    try:
        with timings.stage("decode"):
            time.sleep(0.05)
            with timings.stage("preprocess"):
                time.sleep(0.1)
        thread = threading.Thread(target=lambda: timings.stage("forward").__enter__())
        thread.start()
        thread.join()
        assert run.seconds["forward"] == 0
        assert 0.05 <= run.seconds["decode"] < 0.1 and run.seconds["preprocess"] >= 0.1
    finally:
        report = timings.end()
    assert report["total"] >= report["startup"] + 0.15 and timings.end() is None
    with timings.stage("forward"):  # off: nothing is kept
        pass
    assert timings.format_timings(report).startswith("timings: start-up ")


def test_generate_text_times_its_load_and_generation(cli, tiny_gpt2):
    result = cli("generate-text", "--model", tiny_gpt2, "--max-new-tokens", "8", "--seed", "1", "--json", "--timings",
                 "bread and")
    assert result.exit_code == 0, result.stderr
    generated, timed = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert generated["generations"] and list(timed["timings"]) == [*KEYS, "other", "total"]
    assert timed["timings"]["load"] > 0 and timed["timings"]["forward"] > 0
    interactive = cli("generate-text", "--model", tiny_gpt2, "--interactive", "--timings", input="")
    assert interactive.exit_code == 2 and "--timings" in interactive.stderr


def test_a_generator_left_inside_a_stage_never_makes_the_stages_add_up_to_more_than_the_whole():
    """A generator that yields inside "write" and is resumed from inside another stage: time
    may be put down to the other of the two, but every second is counted once."""
    def produce():
        with timings.stage("write"):
            yield 1
        yield 2

    timings.begin()
    try:
        items = produce()
        next(items)
        with timings.stage("forward"):
            time.sleep(0.05)
            next(items)
            time.sleep(0.05)
        time.sleep(0.05)
    finally:
        report = timings.end()
    named = sum(report[key] for key in KEYS)
    assert named <= report["total"] + 1e-3 and report["other"] >= 0.04, report
    assert report["forward"] + report["write"] >= 0.1 - 1e-3
