"""Core v2: the shared loader, emitter and batching, distributed inference, the fast default
path (no timm, no torchvision), the training contract's additions."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO

from ptcli.inference.batching import Sample, as_list, run_batched
from ptcli.errors import CheckpointError, InputError, UsageError
from ptcli.plugins.recipe import ModelRegistry, ModelSpec, Recipe
from ptcli.inference.results import Failed, ResultFormat, emit_results

# --- the loader ---------------------------------------------------------------------------


def _toy_recipe():
    registry = ModelRegistry("toy")
    registry.add(ModelSpec(name="lin", build=lambda num_classes=2, width=4: torch.nn.Linear(width, num_classes)))
    registry.add(ModelSpec(name="unpublished", build=lambda: torch.nn.Linear(4, 2)))
    return Recipe(name="toy", help="", models=lambda: registry)


def _toy_checkpoint(tmp_path, **kwargs):
    from ptcli.models.checkpoints import save_checkpoint

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    defaults = dict(recipe="toy", model="lin", classes=["a", "b", "c"], extra={"model_args": {"width": 4}})
    return save_checkpoint(tmp_path / "toy", model.state_dict(), **{**defaults, **kwargs}), model


def test_load_model_rebuilds_a_checkpoint_with_its_labels(tmp_path):
    from ptcli.models.loading import load_model

    path, model = _toy_checkpoint(tmp_path)
    loaded = load_model(_toy_recipe(), checkpoint=path)
    assert loaded.labels == ["a", "b", "c"] and loaded.meta["model"] == "lin"
    torch.testing.assert_close(loaded.model.weight, model.weight)


def test_load_model_errors_name_only_the_options_the_command_has(tmp_path):
    from ptcli.models.loading import check_request, load_model

    path, _ = _toy_checkpoint(tmp_path)
    recipe = _toy_recipe()
    with pytest.raises(UsageError, match=r"drop --model/--weights$"):
        load_model(recipe, checkpoint=path, model="lin")
    with pytest.raises(UsageError, match=r"already names its model; drop --model$"):
        load_model(recipe, checkpoint=path, model="lin", options=("--model", "--checkpoint"))
    with pytest.raises(UsageError, match=r"no published weights; pass --weights PATH or --checkpoint CKPT$"):
        load_model(recipe, model="unpublished")
    with pytest.raises(UsageError, match=r"no published weights; pass --checkpoint CKPT$") as caught:
        load_model(recipe, model="unpublished", options=("--model", "--checkpoint"))
    assert "--weights" not in str(caught.value)
    with pytest.raises(UsageError, match=r"already names its model; drop --model$"):
        check_request(recipe, checkpoint=path, model="lin", options=("--model", "--checkpoint"))


def test_load_model_checkpoint_errors(tmp_path):
    from ptcli.models.loading import load_model

    recipe = _toy_recipe()
    path, _ = _toy_checkpoint(tmp_path, extra={"model_args": {"depth": 3}})
    with pytest.raises(CheckpointError, match="cannot rebuild its model from model_args"):
        load_model(recipe, checkpoint=path)
    path, _ = _toy_checkpoint(tmp_path, classes=None)
    with pytest.raises(UsageError, match="lists no classes"):
        load_model(recipe, checkpoint=path)
    assert load_model(recipe, checkpoint=path, needs_labels=False, rebuild=lambda spec, ckpt: torch.nn.Linear(4, 3)).labels is None
    path, _ = _toy_checkpoint(tmp_path, recipe="other")
    with pytest.raises(UsageError, match="made by other, not toy"):
        load_model(recipe, checkpoint=path)


def test_check_request_catches_mistakes_without_a_model(tmp_path):
    from ptcli.models.loading import check_request

    recipe = _toy_recipe()
    with pytest.raises(UsageError, match="unknown model 'lim'.*did you mean lin"):
        check_request(recipe, model="lim")
    with pytest.raises(UsageError, match="unknown device 'gpu'"):
        check_request(recipe, model="lin", device="gpu")
    with pytest.raises(UsageError, match="weights file not found"):
        check_request(recipe, model="lin", weights=tmp_path / "missing.pt")
    with pytest.raises(UsageError, match="checkpoint not found"):
        check_request(recipe, checkpoint=tmp_path / "missing.safetensors")
    check_request(recipe, model="lin", device="cpu")  # a good request passes


# --- the emitter --------------------------------------------------------------------------


FMT = ResultFormat(human=lambda item, r: f"{item}: {r}", fields=lambda item, r: {"value": r}, noun="things",
                   failed="broke")


def test_emitter_human_and_json_with_failures_in_place(capsys):
    import typer

    results = [("a", 1), ("b", Failed("bad b")), ("c", 3)]
    with pytest.raises(typer.Exit) as exited:
        emit_results(iter(results), FMT, total=3, json_output=False, before_exit=lambda: sys.stderr.write("done\n"))
    assert exited.value.exit_code == 1
    out, err = capsys.readouterr()
    assert out == "a: 1\nc: 3\n"
    assert err == "error: b: bad b\ndone\nerror: 1 of 3 things broke\n"  # the closing warning before the count
    with pytest.raises(typer.Exit):
        emit_results(iter(results), FMT, total=3, json_output=True)
    out, err = capsys.readouterr()
    assert [json.loads(line) for line in out.splitlines()] == [
        {"input": "a", "value": 1}, {"input": "b", "error": "bad b"}, {"input": "c", "value": 3}]
    assert err == ""


def test_emitter_counts_and_custom_keys(capsys):
    fmt = ResultFormat(human=str, fields=lambda t, r: {"n": r}, key=lambda t: {"text": t}, label=lambda n, t: f"text {n}")
    assert emit_results([("x", 1), ("y", 2)], fmt, total=2, json_output=True) == 2
    assert capsys.readouterr().out.splitlines() == ['{"text": "x", "n": 1}', '{"text": "y", "n": 2}']


# --- batching that is not classification-shaped ---------------------------------------------


class LoadSized:
    """A picklable load: input n becomes an n x n image, with its size as metadata."""

    def __call__(self, n):
        if n < 0:
            raise InputError(f"cannot read {n}")
        return Sample(torch.full((1, n, n), float(n)), {"size": n})


@pytest.mark.parametrize("workers", [0, 1])
def test_metadata_and_list_batches(workers):
    seen_batches = []

    def forward(images):
        seen_batches.append([tuple(image.shape) for image in images])
        return [image.sum() for image in images]

    results = list(run_batched([2, 3, -1, 5], load=LoadSized(), forward=forward, collate=as_list, batch_size=3,
                               workers=workers, postprocess=lambda total, meta: (float(total), meta["size"]),
                               device=torch.device("cpu")))
    assert results == [(2, (8.0, 2)), (3, (27.0, 3)), (-1, Failed("cannot read -1")), (5, (125.0, 5))]
    assert seen_batches == [[(1, 2, 2), (1, 3, 3)], [(1, 5, 5)]]  # different sizes, one batch


def test_plain_loads_keep_a_one_argument_postprocess():
    results = list(run_batched([1, 2], load=lambda n: torch.tensor([float(n)]), forward=lambda b: b * 2,
                               postprocess=lambda row: float(row[0]), device=torch.device("cpu"), workers=0))
    assert results == [(1, 2.0), (2, 4.0)]


# --- distributed inference ------------------------------------------------------------------


def _torchrun(*args):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "ptcli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)


def _single(*args):
    return subprocess.run([sys.executable, "-m", "ptcli", *map(str, args)], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


@pytest.mark.slow
def test_classify_image_under_torchrun_prints_each_result_once_in_order(shared_data, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("astronaut.jpg", "cat.jpg", "coffee.jpg", "dog.jpg", "rocket.jpg", "gray.png", "rgba.png"):
        (folder / name).write_bytes((shared_data / "images" / name).read_bytes())
    args = ("classify-image", folder, "--json", "--batch-size", "2", "--device", "cpu", "-k", "3")
    shared, alone = _torchrun(*args), _single(*args)
    assert shared.returncode == 0 and alone.returncode == 0, shared.stderr[-2000:]
    lines = [json.loads(line) for line in shared.stdout.splitlines()]
    assert [Path(line["input"]).name for line in lines] == sorted(p.name for p in folder.iterdir())
    expected = [json.loads(line) for line in alone.stdout.splitlines()]
    assert [line["input"] for line in lines] == [line["input"] for line in expected]
    for got, want in zip(lines, expected):
        assert [p["label"] for p in got["predictions"]] == [p["label"] for p in want["predictions"]]
        for a, b in zip(got["predictions"], want["predictions"]):
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)


@pytest.mark.slow
def test_classify_audio_under_torchrun_with_a_failure_in_place(tmp_path):
    from test_classify_audio import write_wav

    from ptcli.models.checkpoints import save_checkpoint
    from ptcli_classify_audio.models import build_audionet

    torch.manual_seed(0)
    net = build_audionet(num_classes=3, width=16)
    ckpt = save_checkpoint(tmp_path / "tones", net.state_dict(), recipe="classify-audio", model="audionet",
                           classes=["low", "mid", "high"], preprocessing={"sample_rate": 8000, "clip_samples": 8000},
                           extra={"model_args": {"width": 16}})
    clips = tmp_path / "clips"
    for i in range(5):
        write_wav(clips / f"{i}.wav", freq=200.0 * (i + 1), seed=i)
    (clips / "3.wav").write_text("not audio")
    args = ("classify-audio", clips, "--checkpoint", ckpt, "--json", "--batch-size", "1", "--device", "cpu")
    shared, alone = _torchrun(*args), _single(*args)
    assert alone.returncode == 1 and shared.returncode == 1  # one unreadable clip: exit 1 either way
    assert shared.stdout == alone.stdout  # every line once, in order, identical
    lines = [json.loads(line) for line in shared.stdout.splitlines()]
    assert [Path(line["input"]).name for line in lines] == [f"{i}.wav" for i in range(5)]
    assert "error" in lines[3] and all("predictions" in line for i, line in enumerate(lines) if i != 3)


# --- one photo, fast ------------------------------------------------------------------------

_PROBE = """
import sys
from ptcli.cli import main
sys.modules["ptcli.cli.app"]._leave = sys.exit  # to look at what was imported once the command is done
sys.argv = ["ptcli", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted(m for m in ("torch", "torchvision", "timm", "torch._dynamo", "transformers") if m in sys.modules)
sys.stderr.write("\\nPROBE " + __import__("json").dumps({"code": code, "heavy": heavy}) + "\\n")
"""


def _probe(*args):
    done = subprocess.run([sys.executable, "-c", _PROBE, *map(str, args)], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    report = json.loads(done.stderr.rsplit("PROBE ", 1)[1])
    return report["code"], report["heavy"], done


def test_one_photo_imports_neither_timm_nor_torchvision():
    code, heavy, done = _probe("classify-image", "examples/cat.jpg", "--json")
    assert code in (0, None), done.stderr
    assert heavy == ["torch"]
    assert json.loads(done.stdout)["predictions"][0]["label"] == "Egyptian cat"


@pytest.mark.parametrize("args", [
    ("classify-image", "missing.jpg"),
    ("classify-image", "examples/cat.jpg", "--model", "resnet5"),
    ("classify-image", "examples/cat.jpg", "--device", "gpu"),
    ("classify-image", "examples/cat.jpg", "--top-k", "0"),
    ("super-resolve", "missing.png"),
    ("super-resolve", "examples/cat.jpg", "--tile", "3"),
    ("classify-audio", "missing.wav"),
    ("classify-text",),
    ("generate-text",),
    ("generate-text", "hello", "--model", "nonexistent"),
    ("generate-text", "hello", "--dtype", "fp64"),
])
def test_errors_that_need_no_model_answer_before_torch(args):
    code, heavy, done = _probe(*args)
    assert code == 2, done.stderr
    assert heavy == [], f"{args} imported {heavy} before answering: {done.stderr}"


def test_lite0_without_timm_matches_timm_exactly():
    import timm

    from ptcli.models.state_dicts import load_state_dict
    from ptcli.vision.pretrained import LITE0_WEIGHTS, efficientnet_lite0, rename_keys_in_order
    from ptcli.models.weights import resolve

    ours = efficientnet_lite0().eval()
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    reference.load_state_dict(rename_keys_in_order(load_state_dict(resolve(LITE0_WEIGHTS)), reference))
    assert list(ours.state_dict()) == list(reference.eval().state_dict())  # checkpoints move between the two
    # timm's TensorFlow port (SAME padding, BatchNorm eps 1e-3), as the weights were trained; odd
    # sizes too, where SAME pads a strided layer differently
    for shape in ((2, 3, 224, 224), (1, 3, 227, 199)):
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)
    scripted = torch.jit.script(ours)  # `ptcli export --method script` compiles it, padding and all
    with torch.inference_mode():
        assert torch.equal(scripted(x), ours(x))


def _torchvision_transform(spec):
    from torchvision.transforms import InterpolationMode, v2

    return v2.Compose([
        v2.Resize(int(spec["resize"]), interpolation=InterpolationMode(spec["interpolation"]), antialias=True),
        v2.CenterCrop(int(spec["crop"])), v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(spec["mean"]), list(spec["std"]))])


@pytest.mark.parametrize("spec", [
    {"resize": 256, "crop": 224, "interpolation": "bicubic", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    {"resize": 232, "crop": 224, "interpolation": "bilinear", "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.3, 0.4]},
    {"resize": 64, "crop": 96, "interpolation": "nearest", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},  # pads
])
def test_preprocessing_without_torchvision_is_bit_equal(shared_data, spec):
    from ptcli_classify_image.data import ImageFiles, Preprocess

    reference, ours = _torchvision_transform(spec), Preprocess(spec)
    for name in ("cat.jpg", "astronaut.jpg", "rocket.jpg", "dog.jpg", "gray.png", "rgba.png"):
        image = ImageFiles().read(shared_data / "images" / name)
        assert torch.equal(ours(image), reference(image)), name


def test_default_model_results_unchanged_on_the_shared_photos(cli, shared_data):
    """The old path (timm's network, torchvision's transforms) against the command's output."""
    import timm

    from ptcli.models.state_dicts import load_state_dict
    from ptcli.vision.pretrained import LITE0_WEIGHTS, rename_keys_in_order
    from ptcli_classify_image.imagenet import imagenet_labels
    from ptcli.models.weights import resolve
    from ptcli_classify_image.data import ImageFiles
    from ptcli_classify_image.models import EFFICIENTNET_LITE0

    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    reference.load_state_dict(rename_keys_in_order(load_state_dict(resolve(LITE0_WEIGHTS)), reference))
    transform = _torchvision_transform(EFFICIENTNET_LITE0.preprocessing)
    names = ["astronaut.jpg", "cat.jpg", "coffee.jpg", "dog.jpg", "gray.png", "rgba.png", "rocket.jpg"]
    result = cli("classify-image", *(shared_data / "images" / n for n in names), "--json")
    assert result.exit_code == 0, result.stderr
    labels = imagenet_labels()
    for name, line in zip(names, result.stdout.splitlines()):
        with torch.inference_mode():
            probabilities = reference.eval()(transform(ImageFiles().read(shared_data / "images" / name))[None]).softmax(-1)[0]
        scores, indices = probabilities.topk(5)
        got = json.loads(line)["predictions"]
        assert [p["label"] for p in got] == [labels[i] for i in indices.tolist()], name
        assert [p["score"] for p in got] == pytest.approx(scores.tolist(), abs=1e-5)


def test_packaged_name_lists_match_torchvision():
    import torchvision.models as tvm
    from torchvision.models import ResNet18_Weights

    from ptcli_classify_image.imagenet import imagenet_labels
    from ptcli_classify_image.models import torchvision_names

    assert torchvision_names() == sorted(tvm.list_models(module=tvm))
    assert imagenet_labels() == list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


# --- the training contract -------------------------------------------------------------------


def test_weights_list_says_when_a_recipe_has_none(cli):
    import toy_recipes

    result = cli("weights", "list", "--recipe", "toy-classify", plugins=[toy_recipes])
    assert result.exit_code == 0 and result.stdout == ""
    assert "recipe toy-classify has no weights files" in result.stderr


def _ragged_run(rank, world, port, val_samples, results):
    import os

    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    import toy_recipes

    from ptcli.training.config import validate
    from ptcli.training.trainer import Trainer

    config = validate(toy_recipes.ToyConfig, {
        "recipe": "toy-classify", "data": {"ragged_metric": True, "val_samples": val_samples},
        "trainer": {"epochs": 1, "batch_size": 4, "device": "cpu"}}, source="test")
    trainer = Trainer(toy_recipes.ToyClassify(config))
    trainer.prepare()
    trainer.fit()
    trainer.close()
    results[rank] = (trainer.last_record["val/boxes"], trainer.task.wrapped_as)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("val_samples", [30, 33])  # 33: the last batch is padded with repeats, dropped again
def test_ragged_metrics_are_gathered_across_two_processes(val_samples):
    import torch.multiprocessing as mp

    expected = sum(i % 2 + 1 for i in range(val_samples))  # sample i has label i % 2 and so i % 2 + 1 boxes
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_ragged_run, args=(2, _free_port(), val_samples, results), nprocs=2, join=True)
        results = dict(results)
    for rank in (0, 1):
        boxes, (wrapped, unwrapped) = results[rank]
        assert boxes == expected  # every sample counted once, on both processes
        assert wrapped == "DistributedDataParallel" and unwrapped == "Sequential"  # ctx.unwrapped()


def test_ragged_metrics_in_one_process(cli, tmp_path):
    import toy_recipes

    from conftest import write_yaml

    config = write_yaml(tmp_path / "toy.yaml", {"recipe": "toy-classify", "data": {"ragged_metric": True, "val_samples": 30},
                                               "trainer": {"epochs": 1, "batch_size": 8, "device": "cpu"},
                                               "run": {"dir": str(tmp_path / "runs"), "tensorboard": False}})
    result = cli("train", config, "--json", plugins=[toy_recipes])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["metrics"]["val/boxes"] == 45


def test_task_callbacks_run_first_on_every_event(cli, tmp_path):
    import toy_recipes

    from conftest import write_yaml

    toy_recipes.EVENTS.clear()
    config = write_yaml(tmp_path / "toy.yaml", {"recipe": "toy-classify", "data": {"record_events": True, "samples": 16},
                                               "trainer": {"epochs": 2, "batch_size": 8, "device": "cpu"},
                                               "run": {"dir": str(tmp_path / "runs"), "tensorboard": False}})
    result = cli("train", config, "--json", plugins=[toy_recipes])
    assert result.exit_code == 0, result.stderr
    events = toy_recipes.EVENTS
    assert events[:2] == ["fit_start", "first callback: EventLog"]
    epoch = ["epoch_start", "batch_end", "batch_end", "validation_start"] + ["validation_batch_end"] * 4 + ["epoch_end"]
    assert events[2:] == epoch * 2 + ["fit_end"]


def test_evaluate_gets_a_resolved_device(cli, tmp_path):
    import toy_recipes

    from ptcli.models.checkpoints import save_checkpoint

    path = save_checkpoint(tmp_path / "toy", {"w": torch.zeros(1)}, recipe="toy-classify", model="toy-mlp", classes=["a", "b"])
    result = cli("eval", path, tmp_path, "--json", "--device", "auto", plugins=[toy_recipes])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["device_class"] == "device" and report["device"] == "cpu"


def test_moving_average_is_a_lerp_from_the_first_step():
    from ptcli_super_resolve.training import EmaUpdate, moving_average

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    averaged = moving_average(model, 0.9)
    expected = start["0.weight"]
    for step in range(3):
        with torch.no_grad():
            model[0].weight.add_(1.0)
            model[1].running_mean.add_(2.0)
        averaged.update_parameters(model)
        expected = expected + 0.1 * (model[0].weight.detach() - expected)
    torch.testing.assert_close(averaged.module[0].weight, expected)
    torch.testing.assert_close(averaged.module[1].running_mean, model[1].running_mean)  # buffers copied
    assert not any(p.requires_grad for p in averaged.parameters())
    assert EmaUpdate(averaged).averaged is averaged


def test_the_complete_yaml_in_training_md_validates():
    import re

    import yaml

    from ptcli.training.schema import ClassificationTrainerConfig, RunConfig

    text = (REPO / "docs" / "training.md").read_text()
    block = re.search(r"```yaml\n(recipe: my-recipe.*?)```", text, re.S).group(1)
    data = yaml.safe_load(block)
    assert set(data) == {"recipe", "data", "model", "trainer", "run", "resume"}
    trainer = ClassificationTrainerConfig.model_validate(data["trainer"])  # every key valid, no typo
    assert trainer.model_dump(mode="json") == ClassificationTrainerConfig().model_dump(mode="json")  # the defaults, as said
    assert RunConfig.model_validate(data["run"]).model_dump(mode="json") == RunConfig().model_dump(mode="json")
