"""classify-image training, eval and the round trip into inference, through the CLI."""

import json

import pytest
import torch
from conftest import make_imagefolder, train_json, write_yaml

from ptcli.models.checkpoints import load_checkpoint
from ptcli.errors import UsageError


def test_simplenet_trains_and_its_checkpoint_classifies(cli, simplenet_config, tiny_imagefolder):
    summary = train_json(cli, simplenet_config)
    assert summary["metrics"]["val/accuracy"] >= 0.9
    best = summary["best_checkpoint"]
    ckpt = load_checkpoint(best, recipe="classify-image")
    assert ckpt.model == "simplenet" and ckpt.classes == ["blue", "green", "red"]
    assert ckpt.meta["model_args"] == {"image_size": 16}
    assert ckpt.preprocessing["crop"] == 16

    result = cli("classify-image", "--checkpoint", best, tiny_imagefolder / "val" / "green" / "00.png", "-k", "1", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["predictions"][0]["label"] == "green"
    human = cli("classify-image", "--checkpoint", best, tiny_imagefolder / "val" / "red" / "01.png", "-k", "3")
    assert human.stdout.splitlines()[1].split()[0] == "red"


def test_eval_reports_accuracy_per_class_and_confusion(cli, simplenet_config, tiny_imagefolder):
    best = train_json(cli, simplenet_config)["best_checkpoint"]
    result = cli("eval", best, tiny_imagefolder, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["samples"] == 12 and report["classes"] == ["blue", "green", "red"]
    assert report["accuracy"] >= 0.9 and "top5" not in report  # top-5 of 3 classes means nothing
    assert [row["support"] for row in report["per_class"]] == [4, 4, 4]
    matrix = report["confusion_matrix"]
    assert [sum(row) for row in matrix] == [4, 4, 4]
    assert sum(matrix[i][i] for i in range(3)) / 12 == pytest.approx(report["accuracy"])

    human = cli("eval", best, tiny_imagefolder / "val")  # a split folder works as well as the root
    assert human.exit_code == 0
    assert "accuracy" in human.stdout and "confusion matrix" in human.stdout and "precision" in human.stdout


def test_eval_on_ten_classes_has_top5(cli, tmp_path):
    from ptcli.training.classification import classification_report

    logits = torch.eye(10)[[0, 1, 2, 3, 4, 5, 6, 7, 8, 8]] + torch.linspace(0, 0.5, 10)
    report = classification_report(logits, torch.arange(10), [str(i) for i in range(10)])
    assert report["accuracy"] == pytest.approx(0.9)
    assert report["top5"] == pytest.approx(1.0)  # 9 ranks second-highest after 8
    assert report["per_class"][8]["precision"] == pytest.approx(0.5) and report["per_class"][9]["recall"] == 0


def test_eval_errors(cli, simplenet_config, tmp_path, tiny_imagefolder):
    best = train_json(cli, simplenet_config)["best_checkpoint"]
    assert "data folder not found" in cli("eval", best, tmp_path / "nope").stderr
    make_imagefolder(tmp_path / "other", {"val": 2})
    (tmp_path / "other" / "val" / "purple").mkdir()
    (tmp_path / "other" / "val" / "purple" / "x.png").write_bytes((tmp_path / "other" / "val" / "red" / "00.png").read_bytes())
    result = cli("eval", best, tmp_path / "other")
    assert result.exit_code == 2 and "purple is not one of the checkpoint's classes" in result.stderr
    assert cli("eval", tmp_path / "missing.safetensors", tiny_imagefolder).exit_code == 2


def test_eval_of_a_recipe_without_evaluation(cli, tmp_path):
    import toy_recipes

    config = write_yaml(tmp_path / "t.yaml", {"recipe": "toy-gan", "trainer": {"epochs": 1}, "run": {"dir": str(tmp_path / "runs")}})
    summary = json.loads(cli("train", config, "--json", plugins=[toy_recipes]).stdout.strip().splitlines()[-1])
    result = cli("eval", summary["last_checkpoint"], tmp_path, plugins=[toy_recipes])
    assert result.exit_code == 2 and "recipe toy-gan does not support `ptcli eval`" in result.stderr


def test_a_checkpoint_of_another_recipe_is_refused_by_classify_image(cli, tmp_path):
    import toy_recipes

    config = write_yaml(tmp_path / "t.yaml", {"recipe": "toy-classify", "trainer": {"epochs": 1}, "run": {"dir": str(tmp_path / "runs")}})
    summary = json.loads(cli("train", config, "--json", plugins=[toy_recipes]).stdout.strip().splitlines()[-1])
    from conftest import REPO

    result = cli("classify-image", "--checkpoint", summary["best_checkpoint"], REPO / "examples" / "cat.jpg", plugins=[toy_recipes])
    assert result.exit_code == 2 and "made by toy-classify, not classify-image" in result.stderr


@pytest.mark.parametrize("change, message", [
    (lambda root: None, None),
    (lambda root: __import__("shutil").rmtree(root / "val"), "set data.val_fraction=0.2"),
    (lambda root: __import__("shutil").rmtree(root / "val" / "red"), "class 'red' has no folder in"),
    (lambda root: (root / "train" / "empty").mkdir(), "has no images"),
    (lambda root: (root / "val" / "extra").mkdir() or (root / "val" / "extra" / "a.png").write_bytes((root / "val" / "red" / "00.png").read_bytes()), "is a class that"),
    (lambda root: __import__("shutil").rmtree(root / "train"), "training folder not found"),
])
def test_imagefolder_layout_errors(tmp_path, change, message):
    from ptcli_classify_image.imagefolder import scan

    root = make_imagefolder(tmp_path / "d", {"train": 3, "val": 2})
    change(root)
    if message is None:
        split = scan(root)
        assert split.classes == ["blue", "green", "red"] and len(split.train) == 9 and len(split.val) == 6
        return
    with pytest.raises(UsageError, match=message):
        scan(root)


def test_validation_fraction_is_stratified_and_seeded(tmp_path):
    from ptcli_classify_image.imagefolder import scan

    root = make_imagefolder(tmp_path / "d", {"train": 10})
    split = scan(root, val_fraction=0.2, seed=3)
    assert len(split.val) == 6 and len(split.train) == 24
    assert sorted(label for _, label in split.val) == [0, 0, 1, 1, 2, 2]
    assert not {p for p, _ in split.val} & {p for p, _ in split.train}
    assert scan(root, val_fraction=0.2, seed=3).val == split.val
    assert scan(root, val_fraction=0.2, seed=4).val != split.val
    with pytest.raises(UsageError, match="use one or the other"):
        scan(make_imagefolder(tmp_path / "e", {"train": 2, "val": 1}), val_fraction=0.2)


def test_training_with_a_validation_fraction(cli, tmp_path):
    root = make_imagefolder(tmp_path / "d", {"train": 10})
    config = write_yaml(tmp_path / "c.yaml", {
        "recipe": "classify-image", "run": {"dir": str(tmp_path / "runs")},
        "data": {"root": str(root), "val_fraction": 0.25, "image_size": 16, "augment": "light"},
        "trainer": {"epochs": 1, "batch_size": 8}})
    assert train_json(cli, config)["metrics"]["epoch"] == 1


def test_missing_data_root_and_unreadable_training_image(cli, simplenet_config, tiny_imagefolder):
    result = cli("train", simplenet_config, "data.root=/no/such/folder")
    assert result.exit_code == 2 and "data.root not found: /no/such/folder" in result.stderr
    broken = tiny_imagefolder / "train" / "red" / "broken.png"
    broken.write_text("not an image")
    result = cli("train", simplenet_config)
    assert result.exit_code == 1
    assert f"{broken}: cannot read image" in result.stderr and "fix or remove the file" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_model_name_is_a_usage_error_with_a_suggestion(cli, simplenet_config):
    result = cli("train", simplenet_config, "model.name=simplenett")
    assert result.exit_code == 2 and "did you mean simplenet" in result.stderr


def test_backbone_weights_offline_fail_in_one_line(cli, simplenet_config):
    result = cli("train", simplenet_config, "model.name=resnet18")
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "resnet18" in result.stderr


def test_cnnnet_needs_64_pixels_and_trains_at_64(cli, simplenet_config):
    result = cli("train", simplenet_config, "model.name=cnnnet")
    assert result.exit_code == 2 and "cnnnet needs images of at least 64 px" in result.stderr
    summary = train_json(cli, simplenet_config, "model.name=cnnnet", "data.image_size=64", "trainer.epochs=1", "trainer.lr=0.0001")
    ckpt = load_checkpoint(summary["last_checkpoint"])
    assert ckpt.model == "cnnnet" and "features.0.weight" in ckpt.state_dict


def test_augmentation_presets_and_data_normalisation(tiny_imagefolder):
    from ptcli_classify_image.data import ImageFiles
    from ptcli_classify_image.imagefolder import channel_stats, scan, transforms

    spec = {"resize": 20, "crop": 16, "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.25] * 3}
    image = ImageFiles().read(tiny_imagefolder / "train" / "red" / "00.png")
    torch.manual_seed(0)
    outputs = {name: [transforms(spec, name)(image) for _ in range(2)] for name in ("none", "light", "book")}
    for name, (a, b) in outputs.items():
        assert a.shape == (3, 16, 16), name
    assert torch.equal(*outputs["none"])  # deterministic
    assert not torch.equal(*outputs["book"])  # random
    split = scan(tiny_imagefolder)
    red = [s for s in split.train if s[1] == split.classes.index("red")]
    mean, std = channel_stats(red, spec)
    assert mean[0] > 0.7 > mean[2] and all(0 < s < 0.3 for s in std)


def test_transfer_learning_keeps_the_frozen_pretrained_backbone(cli, tmp_path, tiny_imagefolder):
    from ptcli.models.state_dicts import load_state_dict
    from ptcli_classify_image.models import EFFICIENTNET_LITE0, rename_keys_in_order
    from ptcli.models.weights import resolve

    config = write_yaml(tmp_path / "t.yaml", {
        "recipe": "classify-image", "run": {"dir": str(tmp_path / "runs")},
        "data": {"root": str(tiny_imagefolder), "image_size": 64, "resize": 64},
        "model": {"name": "efficientnet_lite0"},
        "trainer": {"epochs": 1, "batch_size": 12, "freeze": ["backbone"], "lr": 0.003}})
    summary = train_json(cli, config)
    ckpt = load_checkpoint(summary["best_checkpoint"])
    # "tensorflow": the backbone as its weights were trained; checkpoints without it rebuild the older network
    assert ckpt.meta["model_args"] == {"transfer_head": "book", "hidden": 500, "dropout": 0.5, "tensorflow": True}
    assert ckpt.state_dict["head.0.weight"].shape == (500, 1280) and ckpt.state_dict["head.3.weight"].shape == (3, 500)
    published = rename_keys_in_order(load_state_dict(resolve(EFFICIENTNET_LITE0.weights)), EFFICIENTNET_LITE0.build())
    conv = "blocks.1.0.conv_pw.weight"
    assert torch.equal(ckpt.state_dict[f"backbone.{conv}"], published[conv])  # pretrained, and frozen
    result = cli("classify-image", "--checkpoint", summary["best_checkpoint"], tiny_imagefolder / "val" / "blue", "--json")
    assert result.exit_code == 0
    assert {json.loads(line)["predictions"][0]["label"] for line in result.stdout.splitlines()} <= {"blue", "green", "red"}


def test_the_shipped_recipes_are_valid(cli, tiny_imagefolder):
    from conftest import REPO

    for name in ("imagefolder-simplenet", "imagefolder-transfer"):
        result = cli("train", REPO / "recipes" / f"{name}.yaml", f"data.root={tiny_imagefolder}", "--print-config")
        assert result.exit_code == 0, result.stderr
    transfer = cli("train", REPO / "recipes" / "imagefolder-transfer.yaml", "model.name=resnet50", "--print-config")
    assert "name: resnet50" in transfer.stdout


@pytest.mark.slow
def test_real_photos_transfer_learning(cli, tmp_path, shared_data):
    """EfficientNet-Lite0 (the offline weights) with a frozen backbone on 80 real photos."""
    from conftest import REPO

    summary = train_json(cli, REPO / "recipes" / "imagefolder-transfer.yaml", f"data.root={shared_data / 'imagefolder_photos'}",
                         f"run.dir={tmp_path / 'runs'}", "trainer.epochs=1")
    assert summary["metrics"]["val/accuracy"] >= 0.75
    report = json.loads(cli("eval", summary["best_checkpoint"], shared_data / "imagefolder_photos", "--json").stdout)
    assert report["samples"] == 28 and report["accuracy"] == pytest.approx(summary["metrics"]["val/accuracy"], abs=1e-6)


def test_worker_processes_and_an_unreadable_image_in_a_worker(cli, simplenet_config, tiny_imagefolder):
    summary = train_json(cli, simplenet_config, "trainer.workers=2", "trainer.epochs=1")
    assert summary["metrics"]["epoch"] == 1
    broken = tiny_imagefolder / "train" / "blue" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = cli("train", simplenet_config, "trainer.workers=2")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {broken}: cannot read image") and len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v3_small", "timm/resnet10t.c3_in1k"])
def test_transfer_head_on_torchvision_and_timm_backbones(cli, simplenet_config, tiny_imagefolder, backbone):
    summary = train_json(cli, simplenet_config, f"model.name={backbone}", "model.pretrained=false", "model.head=linear",
                         "data.image_size=32", "data.resize=32", "trainer.epochs=1", "trainer.freeze=[backbone]")
    ckpt = load_checkpoint(summary["best_checkpoint"])
    assert ckpt.model == backbone and ckpt.meta["model_args"]["transfer_head"] == "linear"
    result = cli("classify-image", "--checkpoint", summary["best_checkpoint"], tiny_imagefolder / "val" / "red" / "00.png", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["predictions"][0]["label"] in {"blue", "green", "red"}


def test_pretrained_timm_backbone_offline_fails_in_one_line(cli, simplenet_config):
    result = cli("train", simplenet_config, "model.name=timm/resnet10t.c3_in1k")
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1


def test_checkpoint_with_unknown_model_args_is_a_clear_error(cli, simplenet_config, tiny_imagefolder):
    best = train_json(cli, simplenet_config, "trainer.epochs=1")["best_checkpoint"]
    sidecar = best.replace(".safetensors", ".json")
    meta = json.loads(open(sidecar).read())
    meta["model_args"]["depth"] = 5
    open(sidecar, "w").write(json.dumps(meta))
    result = cli("classify-image", "--checkpoint", best, tiny_imagefolder / "val" / "red" / "00.png")
    assert result.exit_code == 1 and "cannot rebuild its model from model_args" in result.stderr


def test_normalisation_computed_from_the_data_is_stored_in_the_checkpoint(cli, simplenet_config):
    summary = train_json(cli, simplenet_config, "data.normalize=data", "trainer.epochs=1")
    preprocessing = load_checkpoint(summary["last_checkpoint"]).preprocessing
    assert preprocessing["mean"] != [0.485, 0.456, 0.406]  # not ImageNet's
    assert all(0 < m < 1 for m in preprocessing["mean"]) and all(0 < s < 1 for s in preprocessing["std"])


def test_lr_find_on_classify_image(cli, simplenet_config, tmp_path):
    result = cli("lr-find", simplenet_config, "--iterations", "20", "--plot", tmp_path / "lr.png", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["suggested_lr"] > 0 and (tmp_path / "lr.png").is_file()


def test_eval_reports_unreadable_images_and_scores_the_rest(cli, simplenet_config, tiny_imagefolder):
    best = train_json(cli, simplenet_config, "trainer.epochs=1")["best_checkpoint"]
    broken = tiny_imagefolder / "val" / "red" / "broken.png"
    broken.write_text("not an image")
    result = cli("eval", best, tiny_imagefolder, "--json")
    report = json.loads(result.stdout)
    assert report["failed"] == 1 and report["samples"] == 12
    assert f"{broken}: cannot read image" in result.stderr
