"""`ptcli explain`: class activation maps on the real offline model and the shared cat photo."""

import json

import pytest
import torch

#: The cat's head in ../shared/data/images/cat.jpg (451x300), measured once by eye on the photo.
CAT_HEAD = (100, 40, 360, 290)  # x1, y1, x2, y2


def _map(shared_data, method, label=None, layer=None):
    from ptcli.plugins import capabilities
    from ptcli_debug.cam import activation_map
    from ptcli_debug.overlay import heat_on_original

    classifier = capabilities.load(capabilities.IMAGE_CLASSIFIER)
    image = classifier.read(shared_data / "images" / "cat.jpg")
    index = None if label is None else classifier.labels.index(label)
    heat, chosen, score, name = activation_map(classifier.network(), classifier.net, classifier.model_input(image)[None],
                                               index, method=method, layer=layer)
    full = heat_on_original(heat, classifier.input_region(image.width, image.height), image.width, image.height)
    return full, classifier.labels[chosen], name


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "cam"])
def test_the_map_of_the_cat_peaks_inside_the_cat(shared_data, method):
    full, label, layer = _map(shared_data, method)
    assert label == "tiger cat" and layer == "conv_head" and full.shape == (300, 451)
    y, x = divmod(int(full.argmax()), full.shape[1])
    x1, y1, x2, y2 = CAT_HEAD
    assert x1 <= x <= x2 and y1 <= y <= y2, (x, y)
    assert float(full[y1:y2, x1:x2].sum() / full.sum()) > 0.7  # measured: 0.77 to 0.88


def test_another_class_gives_another_map(shared_data):
    tabby, _, _ = _map(shared_data, "gradcam")
    screen, label, _ = _map(shared_data, "gradcam", "window screen")
    assert label == "window screen"
    assert (tabby - screen).abs().mean() > 0.05


def test_explain_from_the_cli_writes_the_overlay(cli, shared_data, tmp_path):
    from PIL import Image

    result = cli("explain", shared_data / "images" / "cat.jpg", "-o", tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    r = json.loads(result.stdout)
    assert set(r) == {"input", "output", "label", "score", "layer"} and r["label"] == "tiger cat"
    drawn = Image.open(r["output"])
    assert drawn.size == (451, 300) and drawn.format == "PNG"
    chosen = json.loads(cli("explain", shared_data / "images" / "cat.jpg", "-o", tmp_path, "--overwrite", "--class", "tabby",
                            "--layer", "blocks.6.0.conv_pwl", "--json").stdout)
    assert chosen["label"] == "tabby" and chosen["layer"] == "blocks.6.0.conv_pwl"
    again = cli("explain", shared_data / "images" / "cat.jpg", "-o", tmp_path)
    assert again.exit_code == 1 and "exists; pass --overwrite" in again.stderr


def test_explain_errors_are_one_line(cli, shared_data, tmp_path):
    cat = shared_data / "images" / "cat.jpg"
    for args, message in [(("--method", "lime"), "--method must be one of"), (("--class", "qqqq"), "not one of the model's 1000 classes; they begin tench, goldfish"),
                          (("--class", "cat"), "did you mean tiger cat, Persian cat, Siamese cat, Egyptian cat"),
                          (("--layer", "nowhere"), "is not a module of this model; its convolutions:")]:
        result = cli("explain", cat, "-o", tmp_path, *args)
        assert result.exit_code == 2 and message in result.stderr and "\n" not in result.stderr.strip(), (args, result.stderr)
    broken = cli("explain", shared_data / "images" / "corrupt.jpg", "-o", tmp_path, "--json")
    assert broken.exit_code == 1 and "truncated" in json.loads(broken.stdout)["error"]


def test_a_network_without_convolutions_is_refused(cli, tmp_path, simplenet_config):
    from conftest import train_json

    summary = train_json(cli, simplenet_config)
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 30, 30)).save(tmp_path / "red.png")
    result = cli("explain", tmp_path / "red.png", "--checkpoint", summary["best_checkpoint"], "-o", tmp_path)
    assert result.exit_code == 2 and "no convolutional layer" in result.stderr
