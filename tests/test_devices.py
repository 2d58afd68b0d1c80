import pytest
import torch

from ptcli.devices import available_devices, resolve_device
from ptcli.errors import UsageError

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA; the test checks its absence")


def test_cpu_is_always_available():
    assert available_devices()[-1] == "cpu"
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps_then_cpu():
    expected = available_devices()[0]
    assert str(resolve_device("auto")) == expected


def test_auto_respects_what_the_recipe_supports():
    assert resolve_device("auto", supported=("cpu",)) == torch.device("cpu")


@no_cuda
def test_cuda_without_cuda_is_a_usage_error_naming_what_is_there():
    with pytest.raises(UsageError, match=r"no CUDA device; available: cpu"):
        resolve_device("cuda")
    with pytest.raises(UsageError, match="no CUDA device"):
        resolve_device("cuda:1")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_index_out_of_range():
    with pytest.raises(UsageError, match="no device cuda:99"):
        resolve_device("cuda:99")


def test_unknown_device_syntax():
    with pytest.raises(UsageError, match="unknown device 'gpu'"):
        resolve_device("gpu")


def test_device_the_recipe_does_not_support():
    with pytest.raises(UsageError, match="does not run on mps"):
        resolve_device("mps", supported=("cuda", "cpu"))


@no_cuda
def test_cli_cuda_on_a_cpu_machine_exits_2(cli):
    result = cli("classify-image", "examples/cat.jpg", "--device", "cuda")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --device cuda asked for, but this machine has no CUDA device; available: cpu"


@no_cuda
def test_cli_device_error_as_json(cli):
    import json

    result = cli("classify-image", "examples/cat.jpg", "--device", "cuda", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {
        "error": "--device cuda asked for, but this machine has no CUDA device; available: cpu", "exit_code": 2
    }
