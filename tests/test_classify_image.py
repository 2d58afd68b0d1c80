import json
from pathlib import Path

import pytest
import torch
from conftest import REPO

from ptcli.models.checkpoints import save_checkpoint
from ptcli.errors import CheckpointError, InputError

CAT_LABELS = {"tabby", "tiger cat", "Egyptian cat"}


def json_lines(result):
    return [json.loads(line) for line in result.stdout.splitlines()]


def top1(entry):
    return entry["predictions"][0]["label"]


def test_example_cat_is_an_egyptian_cat(cli):
    result = cli("classify-image", REPO / "examples" / "cat.jpg")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("cat.jpg")
    assert lines[1].split()[:2] == ["Egyptian", "cat"]
    assert len(lines) == 6  # the path and the default top 5


def test_shared_photos_with_the_default_model(cli, shared_data):
    images = shared_data / "images"
    result = cli("classify-image", images / "cat.jpg", images / "coffee.jpg", images / "gray.png",
                 images / "rgba.png", "--json", "--top-k", "3")
    assert result.exit_code == 0, result.stderr
    entries = json_lines(result)
    assert [Path(e["input"]).name for e in entries] == ["cat.jpg", "coffee.jpg", "gray.png", "rgba.png"]
    assert top1(entries[0]) in CAT_LABELS
    assert top1(entries[1]) == "espresso"
    for entry in entries:
        predictions = entry["predictions"]
        assert len(predictions) == 3
        assert set(predictions[0]) == {"label", "index", "score"}
        scores = [p["score"] for p in predictions]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
    # The RGBA cat (alpha composited on white) still looks like a cat.
    assert top1(entries[3]) in CAT_LABELS


def test_unreadable_files_are_per_file_errors(cli, shared_data):
    result = cli("classify-image", shared_data / "images", "--json", "--top-k", "1", "--batch-size", "4")
    assert result.exit_code == 1
    entries = json_lines(result)
    names = [Path(e["input"]).name for e in entries]
    assert names == sorted(names)  # folder order, streamed in input order
    by_name = {Path(e["input"]).name: e for e in entries}
    assert by_name["corrupt.jpg"] == {"input": str(shared_data / "images" / "corrupt.jpg"),
                                      "error": by_name["corrupt.jpg"]["error"]}
    assert "truncated" in by_name["corrupt.jpg"]["error"]
    assert "cannot identify image file" in by_name["not-an-image.jpg"]["error"]
    ok = [e for e in entries if "predictions" in e]
    assert len(ok) == len(entries) - 2 and top1(by_name["coffee.jpg"]) == "espresso"


def test_unreadable_file_in_human_mode(cli, shared_data):
    images = shared_data / "images"
    result = cli("classify-image", images / "not-an-image.jpg", images / "coffee.jpg", "--top-k", "1")
    assert result.exit_code == 1
    assert "espresso" in result.stdout
    assert f"error: {images / 'not-an-image.jpg'}: cannot read image" in result.stderr
    assert "1 of 2 inputs could not be read" in result.stderr


def test_batching_and_workers_do_not_change_results(cli, shared_data):
    folder = shared_data / "imagefolder_photos" / "val" / "fish"
    one = json_lines(cli("classify-image", folder, "--json", "--batch-size", "1", "--workers", "0", "--top-k", "2"))
    many = json_lines(cli("classify-image", folder, "--json", "--batch-size", "4", "--workers", "2", "--top-k", "2"))
    assert [e["input"] for e in one] == [e["input"] for e in many] and len(one) == 7
    for a, b in zip(one, many):
        assert [p["index"] for p in a["predictions"]] == [p["index"] for p in b["predictions"]]
        assert a["predictions"][0]["score"] == pytest.approx(b["predictions"][0]["score"], abs=1e-4)


def test_glob_input(cli, shared_data):
    pattern = str(shared_data / "imagefolder_digits" / "val" / "[01]" / "*.png")
    entries = json_lines(cli("classify-image", pattern, "--json", "--top-k", "1"))
    assert len(entries) == 40


def test_missing_path_and_unknown_model(cli):
    missing = cli("classify-image", "nowhere/cat.jpg")
    assert missing.exit_code == 2
    assert missing.stderr.strip() == "error: no such file or folder: nowhere/cat.jpg"
    unknown = cli("classify-image", "examples/cat.jpg", "--model", "resnet1800", "--json")
    assert unknown.exit_code == 2
    error = json.loads(unknown.stdout)
    assert error["exit_code"] == 2 and "unknown model 'resnet1800'" in error["error"] and "resnet18" in error["error"]


def test_no_paths_is_a_usage_error(cli):
    result = cli("classify-image")
    assert result.exit_code == 2 and "give at least one image" in result.stderr


def test_list_models(cli):
    names = cli("classify-image", "--list-models").stdout.split()
    assert names[0] == "efficientnet_lite0"
    assert {"resnet18", "resnet152", "vgg16", "alexnet", "mobilenet_v3_large", "efficientnet_b0"} <= set(names)
    assert "timm/<name>" in names
    as_json = [json.loads(line)["name"] for line in cli("classify-image", "--list-models", "--json").stdout.splitlines()]
    assert as_json == names


@pytest.mark.parametrize("name", ["timm/no_such_arch", "timm/resnet50.no_such_tag", "torchvision/resnet18"])
def test_unknown_timm_and_malformed_names(cli, name):
    result = cli("classify-image", "examples/cat.jpg", "--model", name)
    assert result.exit_code == 2
    assert f"unknown model {name!r} for classify-image" in result.stderr


def test_torchvision_model_with_local_weights(cli, tmp_path):
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet18.pth")
    result = cli("classify-image", "examples/cat.jpg", "--model", "resnet18", "--weights", tmp_path / "resnet18.pth",
                 "--json", "--top-k", "2")
    assert result.exit_code == 0, result.stderr
    entry = json.loads(result.stdout)
    from torchvision.models import ResNet18_Weights

    categories = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    assert [categories[p["index"]] for p in entry["predictions"]] == [p["label"] for p in entry["predictions"]]


def test_weights_that_do_not_fit_the_model(cli, tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet18.pth")
    result = cli("classify-image", "examples/cat.jpg", "--model", "resnet34", "--weights", tmp_path / "resnet18.pth")
    assert result.exit_code == 2
    assert "does not fit this model" in result.stderr and "--checkpoint" in result.stderr


def test_missing_weights_file(cli, tmp_path):
    result = cli("classify-image", "examples/cat.jpg", "--weights", tmp_path / "nope.pth")
    assert result.exit_code == 2 and "weights file not found" in result.stderr


def test_default_weights_as_safetensors_file(cli, tmp_path):
    from safetensors.torch import save_file

    from ptcli.models.state_dicts import load_state_dict
    from ptcli.models.weights import resolve
    from ptcli_classify_image.models import EFFICIENTNET_LITE0, rename_keys_in_order

    source = load_state_dict(resolve(EFFICIENTNET_LITE0.weights))
    timm_named = rename_keys_in_order(source, EFFICIENTNET_LITE0.build())
    save_file({k: v.contiguous() for k, v in timm_named.items()}, str(tmp_path / "lite0.safetensors"))
    result = cli("classify-image", "examples/cat.jpg", "--weights", tmp_path / "lite0.safetensors", "--top-k", "1")
    assert result.exit_code == 0 and "Egyptian cat" in result.stdout
    # A safetensors copy of the package's own file (its names, sorted by safetensors) maps by name.
    save_file({k: v.contiguous() for k, v in source.items()}, str(tmp_path / "sorted.safetensors"))
    result = cli("classify-image", "examples/cat.jpg", "--weights", tmp_path / "sorted.safetensors", "--top-k", "1")
    assert result.exit_code == 0 and "Egyptian cat" in result.stdout, result.stderr


@pytest.fixture
def fine_tuned_checkpoint(tmp_path):
    """A 3-class EfficientNet-Lite0 checkpoint, as `ptcli train` will write it."""
    from ptcli_classify_image.models import EFFICIENTNET_LITE0

    torch.manual_seed(0)
    model = EFFICIENTNET_LITE0.build(num_classes=3)
    save_checkpoint(tmp_path / "pets", model.state_dict(), recipe="classify-image", model="efficientnet_lite0",
                    classes=["bird", "cat", "dog"], preprocessing=dict(EFFICIENTNET_LITE0.preprocessing))
    return tmp_path / "pets.safetensors", model


def test_checkpoint_classifies_with_its_own_classes(cli, fine_tuned_checkpoint):
    path, model = fine_tuned_checkpoint
    result = cli("classify-image", "examples/cat.jpg", "--checkpoint", path, "--json")
    assert result.exit_code == 0, result.stderr
    predictions = json.loads(result.stdout)["predictions"]
    assert len(predictions) == 3 and {p["label"] for p in predictions} == {"bird", "cat", "dog"}
    # Same numbers as running the model by hand.
    from ptcli_classify_image.data import ImageFiles, Preprocess
    from ptcli_classify_image.models import EFFICIENTNET_LITE0

    x = Preprocess(EFFICIENTNET_LITE0.preprocessing)(ImageFiles().read(REPO / "examples" / "cat.jpg"))
    with torch.inference_mode():
        expected = model.eval()(x[None]).softmax(-1)[0]
    for p in predictions:
        assert p["score"] == pytest.approx(float(expected[p["index"]]), abs=1e-5)


def test_checkpoint_with_model_option_conflicts(cli, fine_tuned_checkpoint):
    path, _ = fine_tuned_checkpoint
    result = cli("classify-image", "examples/cat.jpg", "--checkpoint", path, "--model", "resnet18")
    assert result.exit_code == 2 and "--checkpoint already names its model" in result.stderr


def test_checkpoint_of_another_recipe(cli, tmp_path):
    save_checkpoint(tmp_path / "lstm", {"w": torch.zeros(2)}, recipe="classify-text", model="bilstm", classes=["a", "b"])
    result = cli("classify-image", "examples/cat.jpg", "--checkpoint", tmp_path / "lstm.safetensors")
    assert result.exit_code == 2
    assert "made by classify-text, not classify-image" in result.stderr


def test_rename_keys_in_order_maps_and_checks_shapes():
    from ptcli_classify_image.models import rename_keys_in_order

    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    source = {"_fc0.w": torch.ones(3, 2), "_fc0.b": torch.zeros(3), "_fc1.w": torch.ones(1, 3), "_fc1.b": torch.zeros(1)}
    renamed = rename_keys_in_order(source, model)
    assert list(renamed) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert renamed["1.weight"] is source["_fc1.w"]
    assert rename_keys_in_order(renamed, model) is renamed
    bad = dict(source, **{"_fc1.w": torch.ones(3, 1)})
    with pytest.raises(CheckpointError, match=r"_fc1.w \(3, 1\) cannot become 1.weight \(1, 3\)"):
        rename_keys_in_order(bad, model)
    with pytest.raises(CheckpointError, match="cannot map 3 tensors"):
        rename_keys_in_order(dict(list(source.items())[:3]), model)


def test_packaged_lite0_weights_map_onto_timm():
    from ptcli.models.state_dicts import load_state_dict
    from ptcli.models.weights import resolve
    from ptcli_classify_image.models import EFFICIENTNET_LITE0, rename_keys_in_order

    source = load_state_dict(resolve(EFFICIENTNET_LITE0.weights))
    model = EFFICIENTNET_LITE0.build()
    renamed = rename_keys_in_order(source, model)
    assert list(renamed) == list(model.state_dict())
    assert next(iter(source)) == "_conv_stem.weight" and next(iter(renamed)) == "conv_stem.weight"


def test_exif_orientation_is_honoured(tmp_path):
    from PIL import Image

    from ptcli_classify_image.data import ImageFiles

    image = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert ImageFiles().read(tmp_path / "rotated.jpg").size == (20, 40)


def test_greyscale_palette_and_alpha_become_rgb(tmp_path):
    from PIL import Image

    from ptcli_classify_image.data import ImageFiles

    Image.new("L", (4, 4), 128).save(tmp_path / "grey.png")
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    Image.new("P", (4, 4)).save(tmp_path / "palette.gif")
    read = ImageFiles().read
    assert read(tmp_path / "grey.png").getpixel((0, 0)) == (128, 128, 128)
    assert read(tmp_path / "clear.png").getpixel((0, 0)) == (255, 255, 255)
    assert read(tmp_path / "palette.gif").mode == "RGB"


def test_reading_broken_files_raises_input_error(tmp_path):
    from ptcli_classify_image.data import ImageFiles

    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="cannot read image"):
        ImageFiles().read(tmp_path / "empty.png")


def test_checkpoint_without_classes(cli, tmp_path):
    from ptcli_classify_image.models import EFFICIENTNET_LITE0

    save_checkpoint(tmp_path / "nameless", EFFICIENTNET_LITE0.build().state_dict(), recipe="classify-image",
                    model="efficientnet_lite0")
    result = cli("classify-image", "examples/cat.jpg", "--checkpoint", tmp_path / "nameless.safetensors")
    assert result.exit_code == 2 and "lists no classes" in result.stderr


def test_model_without_published_weights_needs_weights(cli, monkeypatch):
    from ptcli.plugins.recipe import ModelRegistry, ModelSpec
    from ptcli_classify_image import RECIPE
    from ptcli_classify_image.models import EFFICIENTNET_LITE0

    registry = ModelRegistry("classify-image")
    registry.add(ModelSpec(name="unpublished", build=EFFICIENTNET_LITE0.build))
    monkeypatch.setitem(RECIPE.__dict__, "model_registry", registry)
    result = cli("classify-image", "examples/cat.jpg", "--model", "unpublished")
    assert result.exit_code == 2
    assert "model unpublished has no published weights; pass --weights PATH or --checkpoint CKPT" in result.stderr


def test_the_folded_lite0_computes_what_the_network_does_and_leaves_it_as_it_was():
    """Each BatchNorm folded into its convolution (ptcli.vision.lite0.fused): the same logits to
    float rounding on norms whose statistics are far from the identity, no BatchNorm left in
    the copy, the original untouched (its state dict is what checkpoints and exports hold);
    and the predictor's forward runs the folded copy of whatever its ``net`` is now."""
    from ptcli.vision.lite0 import EfficientNetLite0
    from ptcli_classify_image.predictor import ImageClassifier

    torch.manual_seed(0)
    net = EfficientNetLite0(num_classes=7).eval()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.2, 3.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.5)
    before = {name: tensor.clone() for name, tensor in net.state_dict().items()}
    folded = net.fused()
    pixels = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        expected, got = net(pixels), folded(pixels)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in folded.modules())
    assert net.state_dict().keys() == before.keys()
    assert all(torch.equal(net.state_dict()[name], tensor) for name, tensor in before.items())

    spec = {"resize": 72, "crop": 64, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    classifier = ImageClassifier(net, [str(k) for k in range(7)], spec, torch.device("cpu"))
    with torch.inference_mode():
        assert torch.allclose(classifier.forward(pixels), expected.softmax(-1), atol=1e-5)
        assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in classifier.folded.modules())
        classifier.net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())  # no fused(): as it is
        assert torch.allclose(classifier.forward(pixels), pixels.mean((2, 3)).softmax(-1))


def test_a_lite0_checkpoint_from_before_the_tensorflow_padding_rebuilds_the_network_it_was_trained_in():
    """Checkpoints fine-tuned from Lite0 record ``tensorflow: true`` in their model_args; one
    without it (fine-tuned when ptcli ran Lite0 with centred padding and eps 1e-5) gets that
    network back, so its readings do not move under it."""
    from torch import nn

    from ptcli.vision.lite0 import SameConv2d
    from ptcli_classify_image.models import EFFICIENTNET_LITE0, build_model

    def padding_and_eps(model):
        strided = [m for m in model.modules() if isinstance(m, SameConv2d)]
        norms = {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
        return {m.same for m in strided}, norms, len(strided)

    assert padding_and_eps(build_model(EFFICIENTNET_LITE0, 3, transfer_head="linear", tensorflow=True)) == ({True}, {1e-3}, 5)
    old = build_model(EFFICIENTNET_LITE0, 3, transfer_head="linear")
    assert padding_and_eps(old) == ({False}, {1e-5}, 5)
    assert padding_and_eps(build_model(EFFICIENTNET_LITE0, 3)) == ({False}, {1e-5}, 5)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    centred = old.backbone.conv_stem  # what ptcli's stem computed before: PyTorch's own padding of 1
    assert torch.equal(centred(x), nn.functional.conv2d(x, centred.weight, None, 2, 1))
    assert EFFICIENTNET_LITE0.build().conv_stem.same  # a named model is the weights' own network
