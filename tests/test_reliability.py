"""Reliability: plugin crashes as one line, failed writes, hostile and odd inputs, misleading
answers fixed at their cause."""

import json
import sys
import time
import types

import numpy as np
import pytest
import torch
from conftest import REPO, run_ptcli, write_yaml
from PIL import Image

from ptcli.errors import CheckpointError, InputError, PtcliError

# --- plugin code that raises ------------------------------------------------------------------

CRASHY = '''
from ptcli import hookimpl
from ptcli.cli.options import JsonOption
from ptcli.plugins.recipe import Command, Recipe

def boom(json_output: JsonOption = False):
    """Raise an ordinary exception, as a buggy plugin does."""
    {}["missing"]

@hookimpl
def register_recipes(register):
    register(Recipe(name="crashy-recipe", help="", commands=(Command(name="crash", help="x", target=boom),)))
'''


@pytest.fixture
def crashy(monkeypatch):
    module = types.ModuleType("crashy_plugin")
    exec(CRASHY, module.__dict__)
    monkeypatch.setitem(sys.modules, "crashy_plugin", module)
    return module


def test_a_plugin_exception_is_one_line_naming_the_plugin(cli, crashy, monkeypatch):
    result = cli("crash", plugins=[crashy])
    assert result.exit_code == 1
    assert result.stderr == ("error: crashy_plugin (crashy-recipe) failed: KeyError: 'missing' "
                             "(rerun with PTCLI_DEBUG=1 for the traceback)\n")
    as_json = cli("crash", "--json", plugins=[crashy])
    assert json.loads(as_json.stdout)["error"].startswith("crashy_plugin (crashy-recipe) failed: KeyError")
    monkeypatch.setenv("PTCLI_DEBUG", "1")
    debug = cli("crash", plugins=[crashy])
    assert debug.exit_code == 1 and "Traceback (most recent call last)" in debug.stderr and "boom" in debug.stderr


@pytest.mark.parametrize("hook", ["setup", "training_step", "validation_step"])
def test_a_task_hook_that_raises_names_its_plugin(cli, tmp_path, hook):
    import toy_recipes

    config = write_yaml(tmp_path / "toy.yaml", {"recipe": "toy-classify", "data": {"fail_in": hook},
                                               "run": {"dir": str(tmp_path / "runs")}})
    result = cli("train", config, plugins=[toy_recipes])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: toy_recipes (toy-classify, toy-gan) failed: ValueError: {hook} broke "
        "(rerun with PTCLI_DEBUG=1 for the traceback)")


def test_evaluate_that_raises_names_its_plugin(cli, tmp_path):
    import toy_recipes

    from ptcli.models.checkpoints import save_checkpoint

    path = save_checkpoint(tmp_path / "toy", {"w": torch.zeros(1)}, recipe="toy-classify", model="toy-mlp", classes=["a"])
    result = cli("eval", path, tmp_path / "boom", plugins=[toy_recipes])  # the toy evaluate raises for data named boom
    assert result.exit_code == 1
    assert result.stderr == ("error: toy_recipes (toy-classify, toy-gan) failed: RuntimeError: evaluate broke "
                             "(rerun with PTCLI_DEBUG=1 for the traceback)\n")


def test_piping_json_into_head_ends_quietly(shared_data):
    import subprocess

    command = f"{sys.executable} -m ptcli classify-image {shared_data / 'images'} --json -k 1 --batch-size 1 | head -1"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert len(done.stdout.splitlines()) == 1 and json.loads(done.stdout)["input"].endswith("astronaut.jpg")
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


# --- ptcli eval's exit code ---------------------------------------------------------------------


def test_eval_names_unreadable_inputs_prints_the_report_and_exits_1(cli, tmp_path, shared_data):
    from ptcli.models.checkpoints import save_checkpoint
    from ptcli_classify_image.models import _build_simplenet

    torch.manual_seed(0)
    model = _build_simplenet(num_classes=2, image_size=16)
    ckpt = save_checkpoint(tmp_path / "net", model.state_dict(), recipe="classify-image", model="simplenet",
                           classes=["a", "b"], preprocessing={"resize": 16, "crop": 16, "interpolation": "bilinear",
                                                              "mean": [0.5] * 3, "std": [0.5] * 3},
                           extra={"model_args": {"image_size": 16}})
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.new("RGB", (20, 20), (200, 10, 10)).save(tmp_path / "data" / name / "good.png")
    (tmp_path / "data" / "b" / "broken.png").write_bytes((shared_data / "images" / "corrupt.jpg").read_bytes())
    result = cli("eval", ckpt, tmp_path / "data", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["failed"] == 1 and report["samples"] == 2
    assert "broken.png" in result.stderr


# --- failed writes ------------------------------------------------------------------------------


def test_a_read_only_run_dir_is_one_line(cli, simplenet_config):
    result = cli("train", simplenet_config, "run.dir=/sys/ptcli-runs")
    if result.exit_code == 0:
        pytest.skip("/sys is writable here")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot write /sys/ptcli-runs/") and len(result.stderr.splitlines()) == 1


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    from ptcli.models.checkpoints import load_checkpoint, save_checkpoint

    first = save_checkpoint(tmp_path / "ckpt", {"w": torch.ones(3)}, recipe="r", model="m")

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", full)
    # The issue-38 wording, whichever library met the full disk: "no space left on device: PATH".
    with pytest.raises(PtcliError, match=r"^no space left on device: .*ckpt.safetensors$"):
        save_checkpoint(tmp_path / "ckpt", {"w": torch.zeros(3)}, recipe="r", model="m")
    assert torch.equal(load_checkpoint(first).state_dict["w"], torch.ones(3))  # the old one, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.json", "ckpt.safetensors"]  # no temporary left


def test_torch_save_failing_in_atomic_write_is_one_line(tmp_path, monkeypatch):
    from ptcli.files import atomic_write

    def fail(_tmp):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    with pytest.raises(PtcliError, match="cannot write .*state.pt: PytorchStreamWriter failed"):
        atomic_write(tmp_path / "state.pt", fail)
    assert list(tmp_path.iterdir()) == []


# --- checkpoints and weights files ----------------------------------------------------------------


def test_garbage_bytes_are_not_called_pickled_objects(tmp_path):
    from ptcli.models.state_dicts import load_state_dict

    (tmp_path / "garbage.pth").write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(CheckpointError, match="is not a PyTorch weights file") as caught:
        load_state_dict(tmp_path / "garbage.pth")
    assert "pickled" not in str(caught.value)


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))  # unpickling it would create the file


def test_a_pickle_payload_is_refused_and_never_runs(tmp_path):
    from ptcli.models.state_dicts import load_state_dict

    marker = tmp_path / "pwned.txt"
    torch.save({"weight": torch.ones(2), "payload": _Payload(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="holds pickled Python objects"):
        load_state_dict(tmp_path / "evil.pt")
    assert not marker.exists()


# --- texts --------------------------------------------------------------------------------------


def test_non_utf8_standard_input_is_a_usage_error(tmp_path):
    bad = b"\xff\xfe caf\xe9\n"
    for command in (["classify-text", "-"], ["generate-text", "-"]):
        import subprocess

        done = subprocess.run([sys.executable, "-m", "ptcli", *command], input=bad, capture_output=True, cwd=REPO,
                              timeout=120, env={**__import__("os").environ, "LC_ALL": "C", "PYTHONIOENCODING": ""})
        assert done.returncode == 2, done.stderr
        assert b"standard input is not" in done.stderr and b"Traceback" not in done.stderr


def test_an_empty_text_file_is_a_usage_error(cli, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    result = cli("classify-text", "--file", tmp_path / "empty.txt")
    assert result.exit_code == 2 and "holds no texts" in result.stderr


@pytest.mark.parametrize("value", ["0", "1e-300", "1000"])
def test_repetition_penalty_must_be_in_range(cli, value):
    """Beyond 0.01..100 the logits overflow and sampling fails on inf (a served request gave a 500)."""
    result = cli("generate-text", "hello", "--repetition-penalty", value)
    assert result.exit_code == 2 and "--repetition-penalty must be from 0.01 to 100" in result.stderr


# --- train's small answers ------------------------------------------------------------------------


def test_print_config_json_is_json(cli, simplenet_config):
    result = cli("train", simplenet_config, "--print-config", "--json")
    assert result.exit_code == 0
    config = json.loads(result.stdout)
    assert config["recipe"] == "classify-image" and config["trainer"]["epochs"] == 2


@pytest.mark.parametrize("recipe", ["text-bilstm", "text-transformer", "esrgan-psnr", "esrgan-gan", "imagefolder-simplenet"])
def test_shipped_recipes_say_to_set_data_root(cli, tmp_path, recipe, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a user runs them: no data/ folder beside
    result = cli("train", REPO / "recipes" / f"{recipe}.yaml")
    assert result.exit_code == 2
    assert "does not exist; point it at your data" in result.stderr and "data.root=PATH" in result.stderr


def test_lr_find_logs_its_stages_when_stderr_is_not_a_terminal(tmp_path):
    config = write_yaml(tmp_path / "toy.yaml", {"recipe": "classify-image",
                        "data": {"root": str(REPO / "tests"), "image_size": 16}, "model": {"name": "simplenet"}})
    done = run_ptcli("lr-find", config, "--iterations", "5")  # tests/ holds no images: a clear stop after the first stage
    assert "lr-find: preparing the model and data" in done.stderr


# --- images ---------------------------------------------------------------------------------------


def _modes_of(rgb8: Image.Image):
    """The same picture in other Pillow modes, with the 8-bit RGB each should read as."""
    grey8 = rgb8.convert("L")
    g = np.asarray(grey8)
    yield "I;16", Image.fromarray((g.astype(np.uint16) * 257)), grey8.convert("RGB")
    yield "I", Image.fromarray(g.astype(np.int32) * 257, mode="I"), grey8.convert("RGB")
    yield "I (8-bit range)", Image.fromarray(g.astype(np.int32), mode="I"), grey8.convert("RGB")
    yield "F [0,1]", Image.fromarray(g.astype(np.float32) / 255, mode="F"), grey8.convert("RGB")
    yield "F [0,255]", Image.fromarray(g.astype(np.float32), mode="F"), grey8.convert("RGB")
    yield "L", grey8, grey8.convert("RGB")
    yield "LA opaque", grey8.convert("LA"), grey8.convert("RGB")
    yield "P", rgb8.convert("P"), rgb8.convert("P").convert("RGB")
    yield "RGBA opaque", rgb8.convert("RGBA"), rgb8
    yield "CMYK", rgb8.convert("CMYK"), rgb8
    yield "1", grey8.convert("1"), grey8.convert("1").convert("RGB")


def test_every_pillow_mode_reads_as_its_8bit_copy(shared_data, tmp_path):
    from ptcli_classify_image.data import ImageFiles

    source = Image.open(shared_data / "images" / "coffee.jpg").convert("RGB").resize((64, 48))
    for mode, image, expected in _modes_of(source):
        suffix = ".tif" if mode.startswith(("F", "I", "CMYK")) else ".png"
        path = tmp_path / f"{mode.replace(' ', '_').replace('[', '').replace(']', '').replace(',', '-')}{suffix}"
        image.save(path)
        got = np.asarray(ImageFiles().read(path), dtype=np.int16)
        assert got.shape == (48, 64, 3), mode
        assert np.abs(got - np.asarray(expected, dtype=np.int16)).max() <= 1, mode


def test_a_16_bit_greyscale_photo_is_classified_as_its_8_bit_copy(cli, shared_data, tmp_path):
    grey = Image.open(shared_data / "images" / "cat.jpg").convert("L")
    grey.save(tmp_path / "cat8.png")
    Image.fromarray(np.asarray(grey).astype(np.uint16) * 257).save(tmp_path / "cat16.png")
    assert Image.open(tmp_path / "cat16.png").mode.startswith("I")
    result = cli("classify-image", tmp_path / "cat8.png", tmp_path / "cat16.png", "--json", "-k", "3")
    assert result.exit_code == 0, result.stderr
    eight, sixteen = (json.loads(line)["predictions"] for line in result.stdout.splitlines())
    assert [p["label"] for p in eight] == [p["label"] for p in sixteen]
    for a, b in zip(eight, sixteen):
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_super_resolve_reads_modes_as_their_copies(shared_data, tmp_path):
    from ptcli_super_resolve.images import SRImages

    source = Image.open(shared_data / "images" / "coffee.jpg").convert("RGB").resize((32, 24))
    grey = np.asarray(source.convert("L"))
    Image.fromarray(grey.astype(np.float32) / 255, mode="F").save(tmp_path / "f.tif")
    Image.fromarray(grey.astype(np.int32), mode="I").save(tmp_path / "i8.tif")
    source.convert("L").save(tmp_path / "l.png")
    reference = SRImages().read(tmp_path / "l.png")
    for name in ("f.tif", "i8.tif"):
        image = SRImages().read(tmp_path / name)
        assert image.grey and image.bits == 8, name
        assert (image.rgb - reference.rgb).abs().max() <= 1 / 255 + 1e-6, name


def test_images_above_the_pixel_limit_are_refused_before_decoding(cli, tmp_path, monkeypatch):
    Image.new("RGB", (300, 200)).save(tmp_path / "big.png")
    Image.new("RGB", (30, 20)).save(tmp_path / "small.png")
    monkeypatch.setenv("PTCLI_MAX_IMAGE_PIXELS", "10000")
    from ptcli.vision.imaging import open_image

    with pytest.raises(InputError, match=r"300x200 = 0 million pixels, above the limit.*PTCLI_MAX_IMAGE_PIXELS"):
        open_image(tmp_path / "big.png")
    result = cli("classify-image", tmp_path / "big.png", tmp_path / "small.png", "--json", "-k", "1")
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert "above the limit" in lines[0]["error"] and "predictions" in lines[1]  # the rest go on


def test_a_decompression_bomb_is_a_per_file_error(tmp_path):
    """A PNG whose header claims 100000 x 100000 pixels: refused from its header, never allocated."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(png)
    from ptcli.vision.imaging import open_image

    with pytest.raises(InputError, match="100000x100000 = 10000 million pixels, above the limit"):
        open_image(tmp_path / "bomb.png")


def test_a_class_name_is_matched_ignoring_case_and_few_classes_are_listed():
    from ptcli.errors import UsageError
    from ptcli.plugins.capabilities import label_index

    assert label_index(["ant", "Bee", "bee hive"], "bee", "--class") == 1
    with pytest.raises(UsageError, match=r"--target 'wasp' is not one of the model's 3 classes: ant, Bee, bee hive$"):
        label_index(["ant", "Bee", "bee hive"], "wasp", "--target")


@pytest.mark.parametrize("command", [("attack",), ("explain",), ("detect",), ("super-resolve",)])
def test_an_output_folder_that_cannot_be_written_is_refused_before_any_model_loads(cli, tmp_path, monkeypatch, command):
    """As root a read-only folder is writable, so the refusal is what the probe reports; the
    checkpoint is missing, so an error about it would show that the model came first."""
    import tempfile

    real = tempfile.TemporaryFile
    locked = tmp_path / "locked"
    locked.mkdir()

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and str(dir) == str(locked):
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    for output in (locked, locked / "new" / "deeper"):
        result = cli(*command, REPO / "examples" / "cat.jpg", "--checkpoint", tmp_path / "missing.safetensors", "-o", output)
        assert result.exit_code == 2, result.stderr
        assert result.stderr.strip() == f"error: -o {output} cannot be written (Permission denied); choose a folder you can write to for " \
            + {"attack": "the adversarial images", "explain": "the maps", "detect": "the drawn images and videos"}.get(command[0], "the results")
        assert not (locked / "new").exists()
    (tmp_path / "afile").write_text("x")
    result = cli(*command, REPO / "examples" / "cat.jpg", "-o", tmp_path / "afile" / "below")
    assert result.exit_code == 2 and "afile is a file" in result.stderr


# --- super-resolve's output ---------------------------------------------------------------------


def test_super_resolve_output_options(cli, tmp_path):
    (tmp_path / "afile").write_text("x")
    result = cli("super-resolve", REPO / "examples" / "cat.jpg", "-m", "bicubic", "-o", tmp_path / "afile")
    assert result.exit_code == 2 and "is a file; -o names a folder" in result.stderr
    result = cli("super-resolve", REPO / "examples" / "cat.jpg", "-m", "bicubic", "--ext", "xyz", "-o", tmp_path)
    assert result.exit_code == 2 and "--ext xyz: not a format super-resolve writes" in result.stderr


def test_super_resolve_refuses_a_result_too_big_for_memory_and_goes_on(cli, tmp_path, monkeypatch):
    import ptcli_super_resolve.outputs as outputs

    Image.new("RGB", (64, 64), (10, 200, 30)).save(tmp_path / "big.png")
    Image.new("RGB", (8, 8), (10, 200, 30)).save(tmp_path / "small.png")
    # 20 KB free: the 32x32 result (24 KB) fits nowhere, the 256x256 one neither; the test shrinks memory, not the image
    monkeypatch.setattr(outputs, "available_memory", lambda: 40 * 32 * 32)
    result = cli("super-resolve", tmp_path / "big.png", tmp_path / "small.png", "-m", "bicubic", "-o", tmp_path / "out",
                 "--json")
    assert result.exit_code == 1
    big, small = (json.loads(line) for line in result.stdout.splitlines())
    assert "the 256x256 result needs about" in big["error"] and "GB is available" in big["error"]
    assert small["size"] == [32, 32]


# --- Ctrl-C at every moment of a run -----------------------------------------------------------

#: A 2-epoch toy run of 2 batches and 4 validation batches an epoch has 20 events:
#: fit_start, 2 x (epoch_start, 2 batch_end, validation_start, 4 validation_batch_end, epoch_end), fit_end.
EVENTS_IN_RUN = 20


def _toy_run_config(tmp_path):
    return write_yaml(tmp_path / "toy.yaml", {"recipe": "toy-classify", "data": {"samples": 16},
                                              "trainer": {"epochs": 2, "batch_size": 8, "device": "cpu"},
                                              "run": {"dir": str(tmp_path / "runs"), "tensorboard": False}})


def _epochs(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "time_s"} for row in rows]


def test_the_toy_run_has_the_events_the_sigint_test_counts(cli, tmp_path):
    import toy_recipes

    toy_recipes.EVENTS.clear()
    config = _toy_run_config(tmp_path)
    assert cli("train", config, "data.record_events=true", plugins=[toy_recipes]).exit_code == 0
    assert len([e for e in toy_recipes.EVENTS if not e.startswith("first")]) == EVENTS_IN_RUN


@pytest.mark.parametrize("event", range(1, EVENTS_IN_RUN + 1))
def test_ctrl_c_at_every_event_saves_exits_130_and_resumes_exactly(cli, tmp_path, event):
    import toy_recipes

    config = _toy_run_config(tmp_path)
    full = cli("train", config, "run.name=full", "--json", plugins=[toy_recipes])
    assert full.exit_code == 0, full.stderr
    cut = cli("train", config, "run.name=cut", f"data.sigint_at_event={event}", plugins=[toy_recipes])
    run = tmp_path / "runs" / "toy-classify" / "cut"
    assert cut.exit_code == 130, (event, cut.stderr)
    assert f"resume with: ptcli train {config} resume={run}" in cut.stderr
    assert not list(run.rglob("*.tmp"))  # no half-written file
    resumed = cli("train", config, f"resume={run}", "data.sigint_at_event=null", plugins=[toy_recipes])
    assert resumed.exit_code == 0, resumed.stderr
    got, expected = _epochs(run), _epochs(tmp_path / "runs" / "toy-classify" / "full")
    assert [r["epoch"] for r in got] == [1, 2]
    for a, b in zip(got, expected):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-6), (event, key)


def test_ctrl_c_before_training_leaves_no_run_folder(cli, tmp_path, monkeypatch):
    import toy_recipes

    from ptcli.training.run import RunDir

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "write_config", interrupted)
    result = cli("train", _toy_run_config(tmp_path), plugins=[toy_recipes])
    assert result.exit_code == 130 and result.stderr.strip() == "error: interrupted"
    assert not (tmp_path / "runs" / "toy-classify" / "toy").exists()


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("event", [3, 4, 12, 13])  # after the first and second batch of each epoch
def test_resume_is_exact_with_augmentation_from_the_global_generators(cli, tmp_path, workers, event):
    import toy_recipes

    config = _toy_run_config(tmp_path)
    settings = ("data.augment=true", f"trainer.workers={workers}")
    assert cli("train", config, "run.name=full", *settings, plugins=[toy_recipes]).exit_code == 0
    cut = cli("train", config, "run.name=cut", *settings, f"data.sigint_at_event={event}", plugins=[toy_recipes])
    assert cut.exit_code == 130, cut.stderr
    run = tmp_path / "runs" / "toy-classify" / "cut"
    assert cli("train", config, f"resume={run}", "data.sigint_at_event=null", plugins=[toy_recipes]).exit_code == 0
    for a, b in zip(_epochs(run), _epochs(tmp_path / "runs" / "toy-classify" / "full"), strict=True):
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-6), (workers, event, key)


@pytest.mark.parametrize("event", [3, 4, 5, 12, 13, 14])  # after batches 1-3 of each epoch
def test_resume_is_exact_with_a_grouped_batch_sampler(cli, tmp_path, event):
    import toy_recipes

    config = write_yaml(tmp_path / "toy.yaml", {"recipe": "toy-classify", "data": {"samples": 22, "grouped": True, "augment": True},
                                                "trainer": {"epochs": 2, "batch_size": 4, "device": "cpu"},
                                                "run": {"dir": str(tmp_path / "runs"), "tensorboard": False}})
    assert cli("train", config, "run.name=full", plugins=[toy_recipes]).exit_code == 0
    cut = cli("train", config, "run.name=cut", f"data.sigint_at_event={event}", plugins=[toy_recipes])
    assert cut.exit_code == 130, cut.stderr
    run = tmp_path / "runs" / "toy-classify" / "cut"
    assert cli("train", config, f"resume={run}", "data.sigint_at_event=null", plugins=[toy_recipes]).exit_code == 0
    for a, b in zip(_epochs(run), _epochs(tmp_path / "runs" / "toy-classify" / "full"), strict=True):
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-6), (event, key)


def test_the_trainer_draws_batches_from_the_tasks_batch_sampler(cli, tmp_path, monkeypatch):
    import toy_recipes

    seen = []
    step = toy_recipes.ToyClassify.training_step

    def recording(self, batch, ctx):
        seen.append((ctx.epoch, len(batch[1])))
        return step(self, batch, ctx)

    monkeypatch.setattr(toy_recipes.ToyClassify, "training_step", recording)
    config = write_yaml(tmp_path / "toy.yaml", {"recipe": "toy-classify", "data": {"samples": 22, "grouped": True},
                                                "trainer": {"epochs": 2, "batch_size": 4, "device": "cpu"},
                                                "run": {"dir": str(tmp_path / "runs"), "tensorboard": False}})
    assert cli("train", config, plugins=[toy_recipes]).exit_code == 0
    from ptcli.training.sampling import GroupedBatches

    expected = GroupedBatches([i % 3 for i in range(22)], 4, 0)
    sizes = [len(b) for b in expected]  # groups of 8, 7 and 7: 4 full batches, then the 6 left over in 2
    assert [s for e, s in seen if e == 0] == sizes == [4, 4, 4, 4, 4, 2]
    assert [e for e, _ in seen] == [0] * 6 + [1] * 6


def _recipe_case(name, tmp_path, request):
    """(task class, config file, overrides) for a short run of a real recipe with its random
    augmentation on: 2 epochs of several batches."""
    from conftest import make_imagefolder

    if name == "image: book augmentation + mixup":
        from ptcli_classify_image.training import ClassifyImageTask

        root = make_imagefolder(tmp_path / "colours", {"train": 8, "val": 2})
        config = write_yaml(tmp_path / "c.yaml", {"recipe": "classify-image", "model": {"name": "simplenet"},
                            "data": {"root": str(root), "image_size": 16, "augment": "book"},
                            "trainer": {"epochs": 2, "batch_size": 8, "mixup": 0.4}})
        return ClassifyImageTask, config
    if name == "text: EDA":
        from ptcli_classify_text.training import ClassifyTextTask

        config = request.getfixturevalue("lstm_config")
        return ClassifyTextTask, config, "trainer.epochs=2", "data.augment.insert=0.2", "data.augment.delete=0.2", \
            "data.augment.swap=0.2", "model.dropout=0.3"
    if name == "audio: SpecAugment + waveform":
        from test_classify_audio import audio_config, make_esc50

        from ptcli_classify_audio.training import ClassifyAudioTask

        root = make_esc50(tmp_path / "esc", per_fold=2)
        config = audio_config(tmp_path, root, name="spectrogram", pretrained=False, n_mels=16, n_fft=128, hop=64,
                              freq_mask=4, time_mask=8)
        return ClassifyAudioTask, config, "trainer.epochs=2", "data.augment.gain_db=6", "data.augment.shift=0.1", \
            "data.augment.noise_snr=20", "trainer.batch_size=4"
    if name == "detect: flips, affine, photometric, copy-paste, multi-scale, grouped batches":
        from detect_data import detect_config, make_coco

        from ptcli_detect.training import DetectTask

        root = make_coco(tmp_path / "coco", {"train": 6, "val": 2})
        config = detect_config(tmp_path, root, model={"pretrained": False}, trainer={"epochs": 2, "batch_size": 2})
        # Copy-paste and multi-scale draw from the seeded generators too.
        return DetectTask, write_yaml(tmp_path / "d.yaml", config), "data.copy_paste=0.5", "model.train_sizes=[96,112]", \
            "model.box_batch_size_per_image=32"
    from test_super_resolve_training import make_sr_folder, sr_config

    from ptcli_super_resolve.training import SuperResolveTask

    return SuperResolveTask, sr_config(tmp_path, make_sr_folder(tmp_path / "sr"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["image: book augmentation + mixup", "text: EDA", "audio: SpecAugment + waveform",
                                  "super-resolve: random crops", "detect: flips, affine, photometric, copy-paste, multi-scale, grouped batches"])
def test_real_recipes_resume_exactly_with_their_augmentation(cli, tmp_path, monkeypatch, request, name):
    import toy_recipes

    task, config, *overrides = _recipe_case(name, tmp_path, request)
    armed = []
    own = task.callbacks
    monkeypatch.setattr(task, "callbacks", lambda self: [*own(self), *(toy_recipes.SignalAt(3) for _ in armed)])
    runs = tmp_path / "runs"
    common = (*overrides, f"run.dir={runs}", "run.tensorboard=false")
    assert cli("train", config, *common, "run.name=full").exit_code == 0
    armed.append(True)  # Ctrl-C after the first batch of the first epoch
    cut = cli("train", config, *common, "run.name=cut")
    assert cut.exit_code == 130 and "interrupted in epoch 1, after batch 1" in cut.stderr, cut.stderr
    armed.clear()
    run = next(runs.glob("*/cut"))
    assert cli("train", config, f"resume={run}").exit_code == 0
    for a, b in zip(_epochs(run), _epochs(run.parent / "full"), strict=True):
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-6), (name, key)


# --- Ctrl-C in the inference commands -------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 2, 3, 4])
def test_ctrl_c_during_inference_keeps_the_printed_lines_whole(cli, shared_data, monkeypatch, batch):
    import ptcli.inference.batching as batching

    calls = []
    to_device = batching.to_device

    def interrupted_at_batch(data, device):  # called once per batch, just before its forward pass
        calls.append(1)
        if len(calls) == batch:
            raise KeyboardInterrupt
        return to_device(data, device)

    monkeypatch.setattr(batching, "to_device", interrupted_at_batch)
    result = cli("classify-image", shared_data / "images", "--json", "-k", "1", "--batch-size", "2", "--workers", "0")
    assert result.exit_code == 130
    lines = [json.loads(line) for line in result.stdout.splitlines()]  # every line is whole JSON
    assert lines[-1] == {"error": "interrupted", "exit_code": 130}
    done = lines[:-1]
    assert len(done) == 2 * (batch - 1)  # every input of the batches before it, results and errors
    assert [line["input"] for line in done] == sorted(line["input"] for line in done)


def test_inference_workers_ignore_sigint():
    import signal

    from interrupts import ctrl_c_to_self
    from ptcli.inference.batching import ignore_sigint

    previous = signal.getsignal(signal.SIGINT)
    try:
        ignore_sigint(0)
        ctrl_c_to_self()  # ignored: nothing is raised
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


# --- kill -9 at any moment --------------------------------------------------------------------------

KILL_RUNNER = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import toy_recipes
mode, at = sys.argv[2], int(sys.argv[3])
if mode == "event":  # at the N-th trainer event
    toy_recipes.SignalAt.signum = signal.SIGKILL
elif mode == "sigint":  # Ctrl-C at the N-th trainer event (data.sigint_at_event)
    pass
elif mode == "infer":  # Ctrl-C from the terminal (to the whole process group) before the N-th batch's forward
    import ptcli.inference.batching as batching
    real_to_device, batches = batching.to_device, []
    def ctrl_c_at_batch(data, device):
        batches.append(1)
        if len(batches) == at:
            os.killpg(os.getpgid(0), signal.SIGINT)
        return real_to_device(data, device)
    batching.to_device = ctrl_c_at_batch
elif mode == "startup":  # Ctrl-C while the config is read, before any training
    import ptcli.training.session as session
    real_resolve = session.resolve_config
    def resolve_then_ctrl_c(*args, **kwargs):
        resolved = real_resolve(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        return resolved
    session.resolve_config = resolve_then_ctrl_c
else:  # in the middle of the N-th checkpoint ("export") or training-state ("state") write
    import safetensors.torch
    import torch
    module, name = (safetensors.torch, "save_file") if mode == "export" else (torch, "save")
    real, calls = getattr(module, name), []
    def dying(obj, target, *args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            with open(target, "wb") as handle:
                handle.write(b"half a file")
            os.kill(os.getpid(), signal.SIGKILL)
        return real(obj, target, *args, **kwargs)
    setattr(module, name, dying)
from ptcli import plugins
plugins._cache = plugins.load_plugins([toy_recipes])
from ptcli.cli import main
sys.argv = ["ptcli", *sys.argv[4:]]
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode, at", [("event", 3), ("event", 9), ("event", 12), ("event", 19),
                                      ("export", 1), ("export", 3), ("state", 2)])
def test_kill_9_leaves_the_last_checkpoint_loadable_and_the_run_resumable(cli, tmp_path, mode, at):
    import subprocess
    import toy_recipes

    from ptcli.models.checkpoints import load_checkpoint

    config = _toy_run_config(tmp_path)
    assert cli("train", config, "run.name=full", plugins=[toy_recipes]).exit_code == 0
    extra = [f"data.sigint_at_event={at}"] if mode == "event" else []
    killed = subprocess.run([sys.executable, "-c", KILL_RUNNER, str(REPO / "tests"), mode, str(at), "train", str(config),
                             "run.name=cut", *extra], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert killed.returncode == -9, killed.stderr
    run = tmp_path / "runs" / "toy-classify" / "cut"
    for which in ("last", "best"):
        if (run / "checkpoints" / f"{which}.safetensors").exists():
            assert load_checkpoint(run / "checkpoints" / f"{which}.safetensors").classes == ["a", "b"]
    resumed = cli("train", config, f"resume={run}", "data.sigint_at_event=null", plugins=[toy_recipes])
    if not (run / "checkpoints" / "training_state.pt").exists():  # killed in the first epoch: nothing to resume
        assert resumed.exit_code == 2 and "start it again" in resumed.stderr
        return
    assert resumed.exit_code == 0, resumed.stderr
    assert not list((run / "checkpoints").glob(".*.tmp"))  # the dead write's temporary file is gone
    for a, b in zip(_epochs(run), _epochs(run.parent / "full"), strict=True):
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-6), (mode, at, key)


# --- input expansion and long audio -----------------------------------------------------------------


def test_symlink_loops_do_not_hang_input_expansion(tmp_path):
    from ptcli.inference.inputs import expand_inputs

    (tmp_path / "a").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "a" / "x.png")
    (tmp_path / "a" / "up").symlink_to("..")
    (tmp_path / "self").symlink_to("self")
    assert expand_inputs([str(tmp_path)], (".png",)) == [tmp_path / "a" / "x.png"]


def test_an_unreadable_folder_is_a_usage_error(tmp_path, monkeypatch):
    from pathlib import Path

    from ptcli.errors import UsageError
    from ptcli.inference.inputs import expand_inputs

    (tmp_path / "locked").mkdir()

    def refuse(self, pattern):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "rglob", refuse)  # root reads any folder: the refusal is simulated
    with pytest.raises(UsageError, match=r"cannot list .*locked: Permission denied"):
        expand_inputs([str(tmp_path / "locked")], (".png",))


def test_audio_longer_than_the_limit_is_refused_from_its_header(tmp_path, monkeypatch):
    from test_classify_audio import write_wav

    from ptcli_classify_audio.audio import AudioFiles

    path = write_wav(tmp_path / "long.wav", rate=8000, seconds=3.0)
    monkeypatch.setenv("PTCLI_MAX_AUDIO_SECONDS", "2")
    with pytest.raises(InputError, match=r"audio is 3 s long \(0.0 GB as float32\), above the limit of 2 s; set PTCLI_MAX_AUDIO_SECONDS"):
        AudioFiles().read(path)
    monkeypatch.setenv("PTCLI_MAX_AUDIO_SECONDS", "4")
    assert AudioFiles().read(path)[0].shape == (1, 24000)


def test_a_model_folder_with_its_own_code_is_refused_and_never_run(cli, tmp_path, tiny_bert_classifier):
    import shutil

    folder = tmp_path / "custom"
    shutil.copytree(tiny_bert_classifier, folder)
    marker = tmp_path / "ran.txt"
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    for command in (["classify-text", "--model", folder, "hello"], ["generate-text", "--model", folder, "hello"]):
        result = cli(*command)
        assert result.exit_code == 2
        assert "ships its own Python code (modeling_evil.py), which ptcli runs only with --trust-remote-code" in result.stderr
    assert not marker.exists()


def test_trust_remote_code_runs_a_folders_own_model(cli, tmp_path, tiny_bert_classifier, monkeypatch):
    import shutil

    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    folder = tmp_path / "custom"
    shutil.copytree(tiny_bert_classifier, folder)
    marker = tmp_path / "ran.txt"
    (folder / "modeling_custom.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import BertForSequenceClassification\n"
        "class CustomClassifier(BertForSequenceClassification):\n    pass\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_custom.CustomClassifier"}
    (folder / "config.json").write_text(json.dumps(config))
    refused = cli("classify-text", "--model", folder, "hello", "--json")
    assert refused.exit_code == 2 and not marker.exists()
    trusted = cli("classify-text", "--model", folder, "hello", "--json", "--trust-remote-code")
    assert trusted.exit_code == 0, trusted.stderr
    assert marker.read_text() == "ran"  # its code ran, as asked
    assert {p["label"] for p in json.loads(trusted.stdout)["predictions"]} <= {"negative", "positive"}
    again = cli("classify-text", "--model", folder, "hello")  # the next command does not inherit the trust
    assert again.exit_code == 2


@pytest.mark.parametrize("change, expected", [
    ({"model": "resnet18"}, "missing"),                 # the sidecar names another architecture
    ({"classes": ["a", "b", "c", "d"]}, "wrong shape"),  # the tensors hold 3 classes, not 4
])
def test_a_sidecar_that_does_not_match_its_tensors(cli, tmp_path, change, expected):
    from ptcli.models.checkpoints import save_checkpoint
    from ptcli.models.sidecars import checkpoint_paths
    from ptcli_classify_image.models import EFFICIENTNET_LITE0

    model = EFFICIENTNET_LITE0.build(num_classes=3)
    path = save_checkpoint(tmp_path / "pets", model.state_dict(), recipe="classify-image", model="efficientnet_lite0",
                           classes=["a", "b", "c"], preprocessing=dict(EFFICIENTNET_LITE0.preprocessing))
    sidecar = checkpoint_paths(path)[1]
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), **change}))
    result = cli("classify-image", REPO / "examples" / "cat.jpg", "--checkpoint", path)
    assert result.exit_code == 2
    assert f"checkpoint {path} does not fit this model" in result.stderr and expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("event", [1, 3, 8, 9, 12, 19, 20])
def test_a_second_ctrl_c_stops_at_once_with_no_half_written_file(cli, tmp_path, event):
    import toy_recipes

    from ptcli.models.checkpoints import load_checkpoint

    config = _toy_run_config(tmp_path)
    result = cli("train", config, f"data.sigint_at_event={event}", "data.sigint_twice=true", plugins=[toy_recipes])
    assert result.exit_code == 130 and result.stderr.strip().splitlines()[-1] == "error: interrupted"
    run = tmp_path / "runs" / "toy-classify" / "toy"
    assert not list(run.rglob("*.tmp"))
    for checkpoint in run.glob("checkpoints/*.safetensors"):
        load_checkpoint(checkpoint)  # whatever was written is whole


def test_ctrl_c_in_lr_find_and_eval_exits_130(cli, tmp_path, simplenet_config, monkeypatch):
    import toy_recipes

    import ptcli.training.lr_finder as lr_finder
    from ptcli.models.checkpoints import save_checkpoint

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lr_finder, "lr_range_test", interrupted)
    result = cli("lr-find", simplenet_config, "--json")
    assert result.exit_code == 130 and json.loads(result.stdout) == {"error": "interrupted", "exit_code": 130}
    monkeypatch.setattr(toy_recipes.ToyClassify, "evaluate", classmethod(lambda cls, *a, **k: interrupted()))
    path = save_checkpoint(tmp_path / "toy", {"w": torch.zeros(1)}, recipe="toy-classify", model="toy-mlp", classes=["a"])
    result = cli("eval", path, tmp_path, plugins=[toy_recipes])
    assert result.exit_code == 130 and result.stderr.strip() == "error: interrupted"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["console script", "python -m ptcli"])
def test_a_ctrl_c_at_any_moment_of_start_up_is_one_line_and_exit_130(how):
    """Ctrl-C while ptcli loads, at moments from its first imports to its first batch: no
    traceback from whichever import it cut short, and not a run that goes on to exit 0 because
    a library swallowed it (torch clears a NumPy import's KeyboardInterrupt); with --json, the
    JSON line. Before Python itself has started (its site module), the signal ends the process as
    it would any Python program's."""
    import signal
    import subprocess
    from pathlib import Path

    command = [str(Path(sys.executable).parent / "ptcli")] if how == "console script" else [sys.executable, "-m", "ptcli"]
    heard = 0
    for at in (0.02, 0.05, 0.08, 0.11, 0.15, 0.2, 0.3, 0.4, 0.45, 0.5, 0.55, 0.65):
        as_json = at in (0.08, 0.45)
        process = subprocess.Popen([*command, "classify-image", str(REPO / "examples" / "cat.jpg"), *(["--json"] if as_json else [])],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        time.sleep(at)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
        if at < 0.1 and "/ptcli/" not in err and process.returncode in (-signal.SIGINT, 1):
            # Before a line of ptcli ran: Python's own start-up (its site module, runpy finding
            # the package) was cut short, as any Python program's would be.
            continue
        assert process.returncode == 130, (at, process.returncode, err[-2000:])
        if as_json:
            assert err == "" and out.splitlines()[-1] == '{"error": "interrupted", "exit_code": 130}', (at, out, err)
        else:
            assert err.strip().splitlines()[-1] == "error: interrupted" and "Traceback" not in err, (at, err[-2000:])
        heard += 1
    assert heard >= 9


@pytest.mark.slow
@pytest.mark.parametrize("mode, at", [("startup", 0), ("sigint", 1), ("sigint", 9), ("sigint", 20)])
def test_ctrl_c_is_heard_when_started_with_sigint_ignored(tmp_path, mode, at):
    """A background job of a non-interactive shell (`ptcli train ... &` in a script) starts with
    SIGINT ignored; a `kill -INT` must still stop it."""
    import signal
    import subprocess

    config = _toy_run_config(tmp_path)
    extra = [f"data.sigint_at_event={at}"] if mode == "sigint" else []
    done = subprocess.run([sys.executable, "-c", KILL_RUNNER, str(REPO / "tests"), mode, str(at), "train", str(config),
                           *extra], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert done.returncode == 130, done.stderr
    run = tmp_path / "runs" / "toy-classify" / "toy"
    if mode == "startup":
        assert done.stderr.strip() == "error: interrupted" and not run.exists()
    else:
        assert f"resume with: ptcli train {config} resume={run}" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3])
def test_a_real_ctrl_c_to_the_process_group_during_inference_with_workers(shared_data, tmp_path, batch):
    import subprocess

    done = subprocess.run([sys.executable, "-c", KILL_RUNNER, str(REPO / "tests"), "infer", str(batch), "classify-image",
                           str(shared_data / "images"), "--json", "-k", "1", "--batch-size", "2", "--workers", "2"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300, start_new_session=True)
    assert done.returncode == 130, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]  # whole JSON lines only
    assert lines[-1] == {"error": "interrupted", "exit_code": 130}
    assert len(lines) - 1 in (2 * (batch - 1), 2 * batch)  # the batch in flight may finish: the signal is asynchronous
    assert "Traceback" not in done.stderr and "exited unexpectedly" not in done.stderr
