"""A new user's mistakes (issue 41): each is one line naming what they typed, with the right exit
code, before any model loads or any work is done; and files go only where they were asked for."""

import json

import pytest
from conftest import REPO, run_ptcli
from video_files import make_video

CAT = REPO / "examples" / "cat.jpg"


@pytest.fixture
def clip(tmp_path):
    return make_video(tmp_path / "clip.mp4", frames=4)


# --- an option with an optional value never eats the next word -----------------------------------


def test_track_takes_only_its_trackers_or_nothing(tmp_path, clip):
    """Through a real process: the optional value is read from the command line as typed."""
    for word in ("sort", ""):
        result = run_ptcli("detect", clip, "--track", word, "--checkpoint", tmp_path / "none.safetensors")
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == (f"error: --track takes one of bytetrack, botsort, ocsort, or nothing (then bytetrack): "
                                         f"{word!r} is none of them (an input of that name: write ./{word})")
    # Bare, before another option or an input that exists: the default tracker, and the run goes on to
    # the next check (the checkpoint, which is missing: so nothing loaded before it).
    for args in (("--track", "--checkpoint", tmp_path / "none.safetensors", clip),
                 (clip, "--track", "--checkpoint", tmp_path / "none.safetensors"),
                 ("--track", clip, "--checkpoint", tmp_path / "none.safetensors")):
        result = run_ptcli("detect", *args)
        assert result.returncode == 2 and "checkpoint not found" in result.stderr, (args, result.stderr)


def test_an_option_is_never_taken_for_another_options_value(tmp_path, clip):
    result = run_ptcli("detect", clip, "--track", "--mot", "--checkpoint", tmp_path / "ck.safetensors")
    assert result.returncode == 2
    assert "error: --mot needs a value, and the next word is the option --checkpoint" in result.stderr, result.stderr
    assert "image" not in result.stderr


# --- path options say what they are in their own words --------------------------------------------


def test_mot_names_its_own_mistakes_and_makes_no_folders(cli, tmp_path, clip):
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        (afile / "tracks.txt", f"--mot {afile / 'tracks.txt'}: its folder {afile} is a file; name a file in a folder"),
        (tmp_path, f"--mot {tmp_path} is a folder; --mot names the file the tracks are written to"),
        (tmp_path / "no" / "such" / "t.txt",
         f"--mot {tmp_path / 'no' / 'such' / 't.txt'}: its folder {tmp_path / 'no' / 'such'} is not in an existing folder "
         f"({tmp_path / 'no'} does not exist)"),
        (afile, f"--mot {afile} exists; pass --overwrite to replace it"),
    ]
    for mot, message in cases:
        result = cli("detect", clip, "--track", "bytetrack", "--mot", mot, "--checkpoint", tmp_path / "none.safetensors")
        assert result.exit_code == 2 and message in result.stderr, (mot, result.stderr)
        assert "-o " not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "no").exists()


def test_an_existing_output_video_is_a_usage_error_not_an_unreadable_input(cli, tmp_path, clip):
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip_cam.mp4").write_bytes(b"kept")
    result = cli("explain", clip, "-o", out, "--device", "cpu")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip() == f"error: -o {out}: {out / 'clip_cam.mp4'} exists; pass --overwrite to replace it"
    assert (out / "clip_cam.mp4").read_bytes() == b"kept"


# --- values checked before the work -------------------------------------------------------------


def test_benchmark_refuses_a_folder_without_inputs_before_any_row(cli, tmp_path):
    empty = tmp_path / "empty"
    (empty / "cats").mkdir(parents=True)
    for option in ("--data", "--calibration"):
        result = cli("benchmark", "--recipe", "classify-image", option, empty, "--formats", "eager,onnx-int8", "--json")
        assert result.exit_code == 2, result.stdout
        assert json.loads(result.stdout)["error"].startswith(f"{option} {empty} holds no .jpg"), result.stdout


def test_a_bare_list_in_models_yaml_names_serves_keys(cli, tmp_path):
    config = tmp_path / "models.yaml"
    config.write_text("- name: cat\n  recipe: classify-image\n")
    result = cli("serve", "--config", config)
    assert result.exit_code == 2
    assert "must hold a mapping of keys (models: [{name: ..., recipe: ..., checkpoint: ...}, ...]), not a list" in result.stderr
    assert "trainer" not in result.stderr


# --- files only where asked ---------------------------------------------------------------------


def test_attack_writes_only_where_o_says(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("attack", CAT, "--steps", "1")
    assert result.exit_code == 2 and result.stderr.strip() == (
        "error: attack writes each adversarial image: give -o DIR (-o . for this folder), or --data DIR for a robustness report")
    assert list(tmp_path.iterdir()) == []


# --- Ctrl-C stops the test suite -----------------------------------------------------------------

INNER_SUITE = '''
import os
from pathlib import Path

import toy_recipes
from conftest import write_yaml


def test_trains_for_long(cli, tmp_path):
    config = write_yaml(tmp_path / "toy.yaml", {"recipe": "toy-classify", "trainer": {"epochs": 100000, "batch_size": 8},
                                                "run": {"dir": os.environ["RUNS"]}})
    cli("train", config, plugins=[toy_recipes])


def test_after_it():
    Path(os.environ["RUNS"], "the next test ran").touch()
'''


@pytest.mark.slow
@pytest.mark.parametrize("after_s, workers", [(0.0, 0), (0.6, 0), (1.5, 0), (0.6, 2)])
def test_ctrl_c_stops_the_suite_during_a_training_test(tmp_path, after_s, workers):
    """ptcli's trainer turns the first Ctrl-C into a clean stop, so a command run in the test's own
    process used to end with 130 and the suite went on; the user's Ctrl-C (to the whole process
    group, as a terminal sends it) must stop it, at any moment of the training, run serially or
    on xdist's workers (as the suite runs by default)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "test_inner.py").write_text(INNER_SUITE)
    runs = tmp_path / "runs"
    env = {**os.environ, "RUNS": str(runs), "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    inner = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "conftest", "-q", "-p", "no:cacheprovider", "test_inner.py",
                              "-n", str(workers), "--dist", "loadfile"],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list(runs.glob("*/*/metrics.jsonl")):  # an epoch done: the trainer's handler is in place
            assert inner.poll() is None and time.monotonic() < deadline, inner.communicate(timeout=5)[0]
            time.sleep(0.05)
        time.sleep(after_s)
        os.killpg(inner.pid, signal.SIGINT)
        output = inner.communicate(timeout=60)[0]
    finally:
        if inner.poll() is None:
            os.killpg(inner.pid, signal.SIGKILL)
    assert inner.returncode == 2, output
    # Serially the test it landed in names it; on workers the controller takes it for its own.
    assert ("Ctrl-C during test_inner.py::test_trains_for_long" if not workers else "KeyboardInterrupt") in output, output
    assert not (runs / "the next test ran").exists()


# --- long work is never silent ---------------------------------------------------------------------

SLOW_RUNNER = """
import importlib, sys, time
for spec in filter(None, sys.argv[1].split(",")):  # module:Attribute.path=seconds, slept before each call
    target, seconds = spec.rsplit("=", 1)
    module, path = target.split(":")
    owner = importlib.import_module(module)
    *parents, name = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    def slow(*args, _real=getattr(owner, name), _seconds=float(seconds), **kwargs):
        time.sleep(_seconds)
        return _real(*args, **kwargs)
    setattr(owner, name, slow)
from ptcli.cli import main
sys.stderr.write("runner: started\\n")
sys.stderr.flush()
sys.argv = ["ptcli", *sys.argv[2:]]
main()
"""

#: A slow model: each of its layers (SimpleNet: three Linear) and each load of a checkpoint takes long.
SLOW_MODEL = "torch.nn:Linear.forward=0.15,ptcli.models.checkpoints:load_checkpoint=2.5"


def _stderr_gaps(command: list[str], slow: str, every: float, cwd) -> tuple[list[float], list[str], int]:
    """Runs ``ptcli *command`` with ``slow`` slowing it, and returns its silences (seconds from
    the runner's start mark to the first line on stderr or stdout, between lines, and from the
    last line to the process's end), the lines, and the exit code."""
    import os
    import subprocess
    import sys
    import time

    env = {**os.environ, "PTCLI_PROGRESS_SECONDS": str(every)}
    process = subprocess.Popen([sys.executable, "-c", SLOW_RUNNER, slow, *map(str, command)], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, times = [], []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        times.append(time.monotonic())
    process.wait(timeout=300)
    times.append(time.monotonic())
    start = next(i for i, line in enumerate(lines) if line == "runner: started")
    return [b - a for a, b in zip(times[start:], times[start + 1:])], lines[start + 1:], process.returncode


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "classify-image", "attack", "attack-data", "export", "benchmark"])
def test_long_work_is_never_silent_for_long(tmp_path, command):
    """Each command, driven with a slow model (2.5 s to load, 0.15 s a layer), says something
    on stderr at least every PTCLI_PROGRESS_SECONDS (here 1 s, as 5 s is by default) while it
    works: loading, each export step, each benchmark row, each image attacked, each epoch."""
    from conftest import make_imagefolder, save_simplenet, write_yaml

    folder = make_imagefolder(tmp_path / "colours", {"train": 4, "val": 2})
    checkpoint = save_simplenet(tmp_path / "simplenet", image_size=16, classes=["blue", "green", "red"])
    images = sorted((folder / "val").rglob("*.png"))
    config = write_yaml(tmp_path / "tiny.yaml", {
        "recipe": "classify-image", "data": {"root": str(folder), "image_size": 16, "augment": "none"},
        "model": {"name": "simplenet"}, "trainer": {"epochs": 2, "batch_size": 4}, "run": {"dir": str(tmp_path / "runs")}})
    slow = SLOW_MODEL
    if command == "train":
        args, slow = ["train", config], f"{slow},ptcli.training.trainer:Trainer.prepare=2.5"
    elif command == "classify-image":
        args = ["classify-image", *images[:4], "--checkpoint", checkpoint, "--batch-size", "1"]
    elif command == "attack":
        args = ["attack", images[0], "--checkpoint", checkpoint, "--steps", "6", "-o", tmp_path / "adv"]
    elif command == "attack-data":  # AutoAttack over a labelled folder: each of its attacks named as it runs
        args = ["attack", "--data", folder / "val", "--checkpoint", checkpoint, "--method", "autoattack", "--steps", "2",
                "--queries", "10", "--no-checks", "--json"]
        slow = "torch.nn:Linear.forward=0.02,ptcli.models.checkpoints:load_checkpoint=2.5"
    elif command == "export":
        args, slow = ["export", checkpoint, "-o", tmp_path / "m.onnx"], f"{slow},torch.onnx:export=2.5"
    else:
        args, slow = ["benchmark", checkpoint, "--formats", "eager,onnx", "--repeats", "2", "--json"], f"{slow},torch.onnx:export=2.5"
    gaps, lines, code = _stderr_gaps(args, slow, 1.0, tmp_path)
    assert code == 0, lines
    assert sum(gaps) > 3, (gaps, lines)  # slow enough that a silent command would show
    assert max(gaps) < 2.0, [(round(gap, 1), line) for gap, line in zip(gaps, [*lines, "(the end)"]) if gap > 1.5]
    if command == "attack-data":
        assert any("; running apgd-ce" in line or "; running fab-t" in line for line in lines), lines


def test_a_progress_interval_that_is_not_a_number_is_a_usage_error_before_the_model_loads(cli, monkeypatch):
    monkeypatch.setenv("PTCLI_PROGRESS_SECONDS", "5s")
    result = cli("classify-image", CAT)
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: PTCLI_PROGRESS_SECONDS='5s' is not a number of seconds (0 turns progress lines off)"
