import json
import pickle

import pytest
import torch

from ptcli.models.checkpoints import FORMAT, load_checkpoint, save_checkpoint
from ptcli.models.state_dicts import load_state_dict, load_weights_into
from ptcli.errors import CheckpointError, UsageError


def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


def test_round_trip_is_self_describing(tmp_path):
    model = small_model()
    written = save_checkpoint(tmp_path / "ckpt", model.state_dict(), recipe="classify-image", model="tiny",
                              classes=["cat", "dog"], preprocessing={"crop": 8}, extra={"epoch": 3})
    assert written == tmp_path / "ckpt.safetensors"
    sidecar = json.loads((tmp_path / "ckpt.json").read_text())
    assert sidecar["format"] == FORMAT and sidecar["recipe"] == "classify-image" and sidecar["epoch"] == 3
    assert sidecar["versions"]["torch"] == torch.__version__.split("+")[0]
    assert sidecar["created"].endswith("+00:00")
    for name in ("ckpt", "ckpt.safetensors", "ckpt.json"):
        loaded = load_checkpoint(tmp_path / name, recipe="classify-image")
        assert loaded.classes == ["cat", "dog"] and loaded.model == "tiny" and loaded.preprocessing == {"crop": 8}
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict[key], value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.json", "ckpt.safetensors"]  # no temp files left


def test_shared_tensors_are_saved(tmp_path):
    weight = torch.randn(2, 2)
    save_checkpoint(tmp_path / "tied", {"a": weight, "b": weight}, recipe="r", model="m")
    loaded = load_checkpoint(tmp_path / "tied")
    assert torch.equal(loaded.state_dict["a"], loaded.state_dict["b"])


def test_wrong_recipe_is_a_usage_error(tmp_path):
    save_checkpoint(tmp_path / "text", small_model().state_dict(), recipe="classify-text", model="bilstm")
    with pytest.raises(UsageError, match=r"made by classify-text, not classify-image; use it with `ptcli classify-text"):
        load_checkpoint(tmp_path / "text.safetensors", recipe="classify-image")


def test_missing_sidecar_or_file(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(UsageError, match="sidecar bare.json is missing"):
        load_checkpoint(tmp_path / "bare.safetensors")
    with pytest.raises(UsageError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nothing.safetensors")


def test_pt_files_load_weights_only(tmp_path):
    state = small_model().state_dict()
    torch.save(state, tmp_path / "plain.pt")
    torch.save({"state_dict": state, "epoch": 1}, tmp_path / "nested.pth")
    for name in ("plain.pt", "nested.pth"):
        loaded = load_state_dict(tmp_path / name)
        assert set(loaded) == set(state)


class Payload:
    def __reduce__(self):
        return (print, ("this would run on load",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_objects_are_refused(tmp_path):
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"w": Payload()}, f)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_state_dict(tmp_path / "evil.pt")
    torch.save(small_model(), tmp_path / "whole-model.pt")  # a pickled nn.Module
    with pytest.raises(CheckpointError, match=r"weights_only=True"):
        load_state_dict(tmp_path / "whole-model.pt")


def test_garbage_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError):
        load_state_dict(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_state_dict(tmp_path / "junk.safetensors")


def test_mismatched_weights_name_both_sides():
    model = small_model()
    state = dict(model.state_dict())
    state["2.weight"] = torch.zeros(5, 4)
    state.pop("0.bias")
    state["extra"] = torch.zeros(1)
    with pytest.raises(UsageError) as caught:
        load_weights_into(model, state, source="weights w.pt")
    message = str(caught.value)
    assert "1 missing (e.g. 0.bias)" in message and "1 unexpected (e.g. extra)" in message
    assert "1 wrong shape (e.g. 2.weight)" in message


def test_broken_or_foreign_sidecar(tmp_path):
    save_checkpoint(tmp_path / "ckpt", small_model().state_dict(), recipe="r", model="m")
    (tmp_path / "ckpt.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="sidecar .*ckpt.json is not valid JSON"):
        load_checkpoint(tmp_path / "ckpt.safetensors")
    (tmp_path / "ckpt.json").write_text('{"recipe": "r"}')
    with pytest.raises(UsageError, match=r'is not a ptcli checkpoint sidecar \(no "format": "ptcli-checkpoint"\)'):
        load_checkpoint(tmp_path / "ckpt.safetensors")
