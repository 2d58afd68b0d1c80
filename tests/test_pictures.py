"""Pictures after training and from `ptcli eval --plots` (issue 41): read back as images (a real
PNG of the expected size, not blank) and checked against the numbers they draw."""

import json

import numpy as np
import toy_recipes
from conftest import write_yaml
from PIL import Image


def _looked_at(path, size):
    image = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert image.shape == size, image.shape
    assert image.std() > 5, "a blank picture"  # lines and text on white, not one colour
    return image


def _toy(tmp_path, epochs=3):
    return write_yaml(tmp_path / "toy.yaml", {"recipe": "toy-classify", "trainer": {"epochs": epochs, "batch_size": 8, "lr": 0.05},
                                              "run": {"dir": str(tmp_path / "runs"), "tensorboard": False}})


def test_a_training_run_leaves_its_curves(cli, tmp_path):
    result = cli("train", _toy(tmp_path), "--json", plugins=[toy_recipes])
    assert result.exit_code == 0, result.stderr
    run = tmp_path / "runs" / "toy-classify" / "toy"
    _looked_at(run / "curves.png", (400, 1000))
    from ptcli.training.pictures import curves

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    drawn = curves(records, "val/accuracy", tmp_path / "again.png")
    assert drawn["epochs"] == [1, 2, 3] and drawn["series"]["val/accuracy"] == [r["val/accuracy"] for r in records]
    assert set(drawn["series"]) == {"train/loss", "val/loss", "val/accuracy"}
    # the same data, the same picture
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again.png")), np.asarray(Image.open(run / "curves.png")))


def test_eval_plots_a_classifiers_confusion_matrix(cli, tmp_path, simplenet_config, tiny_imagefolder):
    trained = cli("train", simplenet_config, "trainer.epochs=1", "--json")
    assert trained.exit_code == 0, trained.stderr
    checkpoint = json.loads(trained.stdout.splitlines()[-1])["best_checkpoint"]
    plain = json.loads(cli("eval", checkpoint, tiny_imagefolder / "val", "--json").stdout)
    result = cli("eval", checkpoint, tiny_imagefolder / "val", "--plots", tmp_path / "plots", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    drawn = report.pop("plots")["confusion_matrix"]
    assert report == plain and drawn["matrix"] == plain["confusion_matrix"] and drawn["classes"] == plain["classes"]
    assert drawn["file"] == str(tmp_path / "plots" / "confusion_matrix.png")
    _looked_at(drawn["file"], (400, 500))
    human = cli("eval", checkpoint, tiny_imagefolder / "val", "--plots", tmp_path / "plots")
    assert f"plot: {tmp_path / 'plots' / 'confusion_matrix.png'}" in human.stdout
    # The finished run drew the same confusion matrix into its folder.
    run = json.loads(trained.stdout.splitlines()[-1])["run_dir"]
    assert np.array_equal(np.asarray(Image.open(f"{run}/confusion_matrix.png")), np.asarray(Image.open(drawn["file"])))


def test_plots_that_cannot_be_written_is_refused_before_the_model_loads(cli, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = cli("eval", tmp_path / "missing.safetensors", tmp_path, "--plots", afile)
    assert result.exit_code == 2 and f"--plots {afile} is a file; --plots names a folder" in result.stderr
