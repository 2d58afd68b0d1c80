"""`ptcli detect` through the CLI: models and weights, JSON, drawing, slicing, errors."""

import json

import pytest
import torch

from detect_data import make_coco


@pytest.fixture(scope="module")
def random_mobilenet(tmp_path_factory):
    """fasterrcnn_mobilenet_v3_large_fpn with random weights and COCO's 91 outputs: the
    architecture the COCO weights fit, without the download."""
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)
    path = tmp_path_factory.mktemp("weights") / "mobilenet.safetensors"
    save_file(model.state_dict(), path)
    return path


@pytest.fixture
def photos(shared_data):
    return shared_data / "images"


def _json_lines(result):
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_offline_the_default_model_is_one_line_saying_how_to_get_it(cli, tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    result = cli("detect", tmp_path / "a.png")
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert "\n" not in line and "fasterrcnn_resnet50_fpn_v2" in line and "offline" in line
    assert "ptcli weights fetch fasterrcnn_resnet50_fpn_v2" in line


def test_weights_for_a_named_model_give_coco_labels_as_json(cli, photos, random_mobilenet):
    result = cli("detect", photos / "cat.jpg", photos / "dog.jpg", "--model", "fasterrcnn_mobilenet_v3_large_fpn",
                 "--weights", random_mobilenet, "--threshold", "0", "--max-detections", "5", "--json")
    assert result.exit_code == 0, result.stderr
    lines = _json_lines(result)
    assert [line["input"] for line in lines] == [str(photos / "cat.jpg"), str(photos / "dog.jpg")]
    assert (lines[0]["width"], lines[0]["height"]) == (451, 300) and (lines[1]["width"], lines[1]["height"]) == (1024, 768)
    from ptcli_detect.models import coco_categories

    names = coco_categories()
    for line in lines:
        assert 0 < len(line["detections"]) <= 5
        scores = [d["score"] for d in line["detections"]]
        assert scores == sorted(scores, reverse=True)
        for d in line["detections"]:
            assert set(d) == {"label", "category_id", "score", "bbox"}
            assert names[d["category_id"]] == d["label"] and d["label"] not in ("__background__", "N/A")
            x, y, w, h = d["bbox"]
            assert 0 <= x and 0 <= y and w >= 0 and h >= 0 and x + w <= line["width"] + 0.01 and y + h <= line["height"] + 0.01


def test_an_unreadable_image_is_an_error_line_and_exit_1_after_the_rest(cli, photos, random_mobilenet):
    result = cli("detect", photos / "corrupt.jpg", photos / "cat.jpg", photos / "not-an-image.jpg", "--model",
                 "fasterrcnn_mobilenet_v3_large_fpn", "--weights", random_mobilenet, "--json", "--threshold", "0.2")
    assert result.exit_code == 1
    lines = _json_lines(result)
    assert [set(line) for line in lines] == [{"input", "error"}, {"input", "width", "height", "detections"}, {"input", "error"}]
    assert "truncated" in lines[0]["error"]


def test_classes_filter_and_an_unknown_class_is_a_usage_error(cli, photos, random_mobilenet):
    common = (photos / "cat.jpg", "--model", "fasterrcnn_mobilenet_v3_large_fpn", "--weights", random_mobilenet,
              "--threshold", "0", "--json")
    everything = _json_lines(cli("detect", *common))[0]["detections"]
    labels = sorted({d["label"] for d in everything})
    kept = _json_lines(cli("detect", *common, "--classes", labels[0]))[0]["detections"]
    assert kept and {d["label"] for d in kept} == {labels[0]}
    result = cli("detect", *common, "--classes", f"{labels[0]},unicorn")
    assert result.exit_code == 2
    assert "no class 'unicorn'" in result.stdout + result.stderr


def test_masks_from_a_model_without_them_is_a_usage_error(cli, photos, random_mobilenet):
    result = cli("detect", photos / "cat.jpg", "--model", "fasterrcnn_mobilenet_v3_large_fpn", "--weights",
                 random_mobilenet, "--masks")
    assert result.exit_code == 2 and "predicts no masks" in result.stderr


def test_output_draws_boxes_on_a_copy_and_keeps_what_exists(cli, photos, random_mobilenet, tmp_path):
    from PIL import Image

    common = (photos / "cat.jpg", "--model", "fasterrcnn_mobilenet_v3_large_fpn", "--weights", random_mobilenet,
              "--threshold", "0", "-o", tmp_path / "out", "--json")
    result = cli("detect", *common)
    assert result.exit_code == 0, result.stderr
    line = _json_lines(result)[0]
    drawn = Image.open(line["output"])
    assert drawn.size == (451, 300)
    import numpy as np

    original = np.asarray(Image.open(photos / "cat.jpg").convert("RGB"))
    changed = torch.from_numpy((np.asarray(drawn.convert("RGB")) != original).any(axis=2))
    assert 0 < changed.float().mean() < 0.5  # boxes drawn, the photo still there
    again = cli("detect", *common)
    assert again.exit_code == 1 and "exists; pass --overwrite" in again.stdout
    assert cli("detect", *common, "--overwrite").exit_code == 0


def test_o_naming_a_file_is_a_usage_error(cli, photos, tmp_path):
    (tmp_path / "file").write_text("x")
    result = cli("detect", photos / "cat.jpg", "-o", tmp_path / "file")
    assert result.exit_code == 2 and "is a file" in result.stderr


def test_list_models(cli):
    result = cli("detect", "--list-models", "--json")
    names = [json.loads(line)["name"] for line in result.stdout.splitlines()]
    assert names[:6] == ["fasterrcnn_resnet50_fpn_v2", "fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn",
                         "maskrcnn_resnet50_fpn_v2", "retinanet_resnet50_fpn_v2", "ssdlite320_mobilenet_v3_large"]
    assert "fasterrcnn_lite0_fpn" in names


@pytest.mark.parametrize("name", ["retinanet_resnet50_fpn_v2", "ssdlite320_mobilenet_v3_large", "fasterrcnn_resnet50_fpn"])
def test_every_family_runs_from_weights(cli, photos, tmp_path, name):
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = getattr(torchvision.models.detection, name)(weights=None, weights_backbone=None)
    save_file(model.state_dict(), tmp_path / "w.safetensors")
    result = cli("detect", photos / "cat.jpg", "--model", name, "--weights", tmp_path / "w.safetensors",
                 "--threshold", "0", "--max-detections", "3", "--json")
    assert result.exit_code == 0, result.stderr
    assert len(_json_lines(result)[0]["detections"]) == 3


def test_weights_of_another_architecture_are_refused_in_one_line(cli, photos, random_mobilenet):
    result = cli("detect", photos / "cat.jpg", "--model", "fasterrcnn_resnet50_fpn", "--weights", random_mobilenet)
    line = result.stderr.strip()
    assert result.exit_code == 2 and "\n" not in line and "does not fit this model" in line, line


def test_unknown_model_and_bad_slice_merge(cli, photos):
    result = cli("detect", photos / "cat.jpg", "--model", "fasterrcnn_resnet51_fpn")
    assert result.exit_code == 2 and "did you mean fasterrcnn_resnet50_fpn" in result.stderr
    result = cli("detect", photos / "cat.jpg", "--slice", "640", "--slice-merge", "wbf")
    assert result.exit_code == 2 and "greedy, nms" in result.stderr


def test_cuda_asked_for_on_a_machine_without_it(cli, photos, random_mobilenet):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = cli("detect", photos / "cat.jpg", "--model", "fasterrcnn_mobilenet_v3_large_fpn", "--weights",
                 random_mobilenet, "--device", "cuda")
    assert result.exit_code == 2 and "cuda" in result.stderr.lower()


def test_sliced_inference_from_the_cli_maps_boxes_to_the_image(cli, photos, random_mobilenet):
    result = cli("detect", photos / "dog.jpg", "--model", "fasterrcnn_mobilenet_v3_large_fpn", "--weights",
                 random_mobilenet, "--slice", "384", "--slice-overlap", "0.25", "--threshold", "0", "--json")
    assert result.exit_code == 0, result.stderr
    line = _json_lines(result)[0]
    assert (line["width"], line["height"]) == (1024, 768) and line["detections"]
    for d in line["detections"]:
        x, y, w, h = d["bbox"]
        assert x + w <= 1024.01 and y + h <= 768.01
    assert "fits in one --slice" not in result.stderr
    one_tile = cli("detect", photos / "dog.jpg", photos / "dog.jpg", "--model", "fasterrcnn_mobilenet_v3_large_fpn", "--weights",
                   random_mobilenet, "--slice", "1024", "--threshold", "0", "--json")
    assert one_tile.exit_code == 0, one_tile.stderr
    assert one_tile.stderr.count("an image of 1024x768 fits in one --slice 1024 tile: slicing adds nothing") == 1


@pytest.mark.parametrize("sliced", [False, True])
@pytest.mark.parametrize("at", [1, 2, 3])
def test_ctrl_c_at_any_forward_pass_exits_130_with_whole_lines(cli, shared_data, random_mobilenet, monkeypatch, sliced, at):
    """Ctrl-C reaches the command while the model runs: the first, second or third forward pass
    (images, or with --slice, batches of tiles), whole images or sliced."""
    import torchvision

    calls = []
    forward = torchvision.models.detection.generalized_rcnn.GeneralizedRCNN.forward

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            raise KeyboardInterrupt
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(torchvision.models.detection.generalized_rcnn.GeneralizedRCNN, "forward", interrupted)
    images = shared_data / "images"
    extra = ("--slice", "512", "--batch-size", "2") if sliced else ("--workers", "0")
    result = cli("detect", images / "cat.jpg", images / "coffee.jpg", images / "dog.jpg", "--model",
                 "fasterrcnn_mobilenet_v3_large_fpn", "--weights", random_mobilenet, "--json", *extra)
    assert result.exit_code == 130
    lines = [json.loads(line) for line in result.stdout.splitlines()]  # every line is whole JSON
    assert lines[-1] == {"error": "interrupted", "exit_code": 130}
    done = lines[:-1]
    assert all("detections" in line for line in done) and len(done) < 3


def test_classes_naming_nothing_is_a_usage_error(cli, photos):
    result = cli("detect", photos / "cat.jpg", "--classes", " , ")
    assert result.exit_code == 2 and "--classes needs at least one class name" in result.stderr

