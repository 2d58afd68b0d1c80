"""`ptcli certify` (randomized smoothing) checked against a straightforward reimplementation of
Cohen et al.'s CERTIFY, training with Gaussian noise, and TRADES with an eps warm-up."""

import json
from pathlib import Path

import pytest
import torch

from conftest import colour_simplenet_config, make_imagefolder, train_json, train_once, write_yaml


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return make_imagefolder(tmp_path_factory.mktemp("colours") / "data", {"train": 16, "val": 5}, size=16)


def _config(tmp, root, name, **sections):
    return colour_simplenet_config(tmp, root, name, epochs=3, **sections)


@pytest.fixture(scope="module")
def noisy_model(colours, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("noisy")
    trained = train_once(_config(tmp, colours, "noisy", adversarial={"noise": "gaussian", "sigma": 0.5}))
    assert "val/robust_accuracy" in trained["metrics"]  # accuracy on noisy images, the monitored one
    return trained["best_checkpoint"]


def _reference_certify(network, x, sigma, n0, n, alpha, seed):
    """Cohen et al.'s CERTIFY written out plainly: every draw at once, scipy for the bounds."""
    from scipy.stats import beta, norm

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        first = network(x + sigma * torch.randn((n0, *x.shape), generator=generator)).argmax(1)
        top = int(torch.bincount(first, minlength=3).argmax())
        second = network(x + sigma * torch.randn((n, *x.shape), generator=generator)).argmax(1)
    count = int((second == top).sum())
    p_lower = beta.ppf(alpha, count, n - count + 1) if count else 0.0
    if p_lower < 0.5:
        return None, 0.0
    return top, sigma * norm.ppf(p_lower)


def test_certify_matches_a_plain_reimplementation(cli, colours, noisy_model):
    from ptcli.plugins import capabilities

    sigma, n0, n, alpha = 0.5, 20, 300, 0.01
    result = cli("certify", noisy_model, "--data", colours / "val", "--sigma", sigma, "--n0", n0, "--n", n, "--alpha", alpha,
                 "--batch-size", 512, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    classifier = capabilities.load(capabilities.IMAGE_CLASSIFIER, checkpoint=Path(noisy_model))
    network = classifier.network().eval()
    pairs = classifier.labelled(colours / "val")
    assert report["samples"] == len(pairs) == 15
    radii, labels = [], []
    for row, (path, label) in zip(report["inputs"], pairs):
        x = classifier.model_input(classifier.read(path))
        top, radius = _reference_certify(network, x, sigma, n0, n, alpha, seed=0)
        assert row["input"] == str(path) and row["true_label"] == classifier.labels[label]
        assert row["label"] == (classifier.labels[top] if top is not None else None) and row["abstain"] == (top is None)
        assert row["radius"] == pytest.approx(radius, abs=1e-5)
        radii.append(radius if top == label else -1.0)
        labels.append(label)
    for r, value in report["certified_accuracy"].items():
        assert value == pytest.approx(sum(radius >= float(r) for radius in radii) / len(radii), abs=1e-4)
    assert list(report["certified_accuracy"]) == ["0", "0.25", "0.5", "1"]
    assert report["certified_accuracy"]["0"] >= 0.8 and report["certified_accuracy"]["0.25"] > 0  # it certifies
    human = cli("certify", noisy_model, "--data", colours / "val", "--sigma", sigma, "--n0", n0, "--n", 100, "--radii", "0,0.1")
    assert "L2 radius" in human.stdout and "certified accuracy" in human.stdout and "0.1 " in human.stdout


def test_certify_one_image_and_an_abstention(cli, colours, noisy_model, tmp_path):
    image = next((colours / "val" / "red").iterdir())
    row = json.loads(cli("certify", noisy_model, image, "--sigma", 0.5, "--n", 200, "--n0", 20, "--json").stdout)
    assert row["input"] == str(image) and not row["abstain"] and row["label"] == "red" and row["radius"] > 0
    # noise far larger than anything it was trained on: the answer is a coin toss, so it abstains
    loud = json.loads(cli("certify", noisy_model, image, "--sigma", 1.0, "--n", 50, "--n0", 10, "--alpha", 0.001, "--json").stdout)
    if loud["abstain"]:
        assert loud["label"] is None and loud["radius"] == 0 and loud["p_lower"] < 0.5
    else:  # a certificate then has its probability bounded above one half
        assert loud["p_lower"] >= 0.5
    assert "certified within L2 radius" in cli("certify", noisy_model, image, "--n", 50, "--n0", 10).stdout


def test_certify_errors_are_one_line(cli, colours, noisy_model, tmp_path):
    for args, message in [((), "give image files, folders or globs, or --data DIR"),
                          (("--data", tmp_path / "missing"), "data folder not found"),
                          (("--data", colours / "val", "--sigma", "0"), "--sigma must be above 0"),
                          (("--data", colours / "val", "--alpha", "0.7"), "--alpha must be between 0 and 0.5"),
                          (("--data", colours / "val", "--radii", "a,b"), "--radii must be numbers")]:
        result = cli("certify", noisy_model, *args)
        assert result.exit_code == 2 and message in result.stderr and "\n" not in result.stderr.strip(), (args, result.stderr)
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    result = cli("certify", noisy_model, broken, "--n", 10, "--n0", 5)
    assert result.exit_code == 1 and "1 of the images could not be read" in result.stderr


def test_trades_with_a_warm_up_trains_and_keeps_the_most_robust_epoch(cli, colours, tmp_path):
    config = _config(tmp_path, colours, "trades", adversarial={"method": "trades", "eps": 0.1, "steps": 3, "beta": 6,
                                                               "warmup_epochs": 2})
    trained = train_json(cli, config)
    history = [json.loads(line) for line in (Path(trained["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    robust = [record["val/robust_accuracy"] for record in history if "val/robust_accuracy" in record]
    assert len(robust) == 3 and trained["metrics"]["val/robust_accuracy"] == max(robust)
    wrong = write_yaml(tmp_path / "bad.yaml", {"recipe": "classify-image", "data": {"root": str(colours)},
                                               "adversarial": {"method": "trades", "beta": -1}})
    result = cli("train", wrong)
    assert result.exit_code == 2 and "beta" in result.stderr


def test_the_warm_up_grows_eps_linearly():
    from types import SimpleNamespace

    from ptcli_classify_image.training import AdversarialConfig, ClassifyImageTask

    task = ClassifyImageTask.__new__(ClassifyImageTask)
    task.config = SimpleNamespace(adversarial=AdversarialConfig(eps=0.1, warmup_epochs=4))
    assert [round(task._eps(SimpleNamespace(epoch=e)), 6) for e in range(6)] == [0.025, 0.05, 0.075, 0.1, 0.1, 0.1]
    task.config = SimpleNamespace(adversarial=AdversarialConfig(eps=0.1))
    assert task._eps(SimpleNamespace(epoch=0)) == 0.1


def test_the_shipped_smoothing_recipe_trains(cli, colours, tmp_path):
    from conftest import REPO

    run = train_json(cli, REPO / "recipes" / "imagefolder-smoothing.yaml", f"data.root={colours}", "data.image_size=16",
                     "trainer.epochs=1", f"run.dir={tmp_path}", "run.tensorboard=false")
    assert {"val/accuracy", "val/robust_accuracy"} <= set(run["metrics"])
