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
