"""--dtype bf16: torch.autocast where the device computes bf16, refused (one line) where it
does not or the recipe runs in fp32 only; the results stay the fp32 model's."""

import json

import pytest

from conftest import REPO

CAT = REPO / "examples" / "cat.jpg"


def _rows(result):
    assert result.exit_code == 0, result.stdout + result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _bf16_here() -> bool:
    import torch

    from ptcli.devices import bf16_native

    return bf16_native(torch.device("cpu"))


@pytest.mark.skipif(not _bf16_here(), reason="this CPU has no bf16 units (AVX-512 BF16 or AMX)")
def test_classify_image_in_bf16_keeps_the_fp32_answer(cli, tmp_path):
    from ptcli.plugins.tiny_inputs import write_image

    pictures = [CAT, *(write_image(tmp_path / f"{i}.png", size=(90 + 13 * i, 70 + 9 * i), seed=i) for i in range(3))]
    fp32 = _rows(cli("classify-image", *pictures, "--json", "-k", "3"))
    bf16 = _rows(cli("classify-image", *pictures, "--json", "-k", "3", "--dtype", "bf16"))
    assert fp32[0]["predictions"][0]["label"] == bf16[0]["predictions"][0]["label"] == "Egyptian cat"
    assert bf16[0]["predictions"][0]["score"] == pytest.approx(fp32[0]["predictions"][0]["score"], abs=0.05)
    assert any(a["predictions"][0]["score"] != b["predictions"][0]["score"] for a, b in zip(fp32, bf16))  # it did run in bf16


@pytest.mark.skipif(not _bf16_here(), reason="this CPU has no bf16 units (AVX-512 BF16 or AMX)")
def test_bf16_runs_under_autocast_in_the_command_loop_and_in_predict(monkeypatch):
    import torch

    from ptcli.inference.contract import Predictor, Sample
    from ptcli.inference.runner import run

    class Seen(Predictor):
        collate = "stack"
        device = torch.device("cpu")

        def decode(self, item):
            return Sample(torch.ones(4))

        def forward(self, batch):
            layer = torch.nn.Linear(4, 2)
            return [(layer(batch).dtype, torch.is_autocast_enabled("cpu"))] * len(batch)

        def postprocess(self, row, meta):
            return {"dtype": str(row[0]), "autocast": row[1]}

    predictor = Seen()
    predictor.precision = "bf16"
    assert [r for _, r in run(predictor, ["a", "b"], batch_size=2, workers=0)] == [{"dtype": "torch.bfloat16", "autocast": True}] * 2
    assert predictor.predict([predictor.decode("a")]) == [{"dtype": "torch.bfloat16", "autocast": True}]
    predictor.precision = "fp32"
    assert predictor.predict([predictor.decode("a")]) == [{"dtype": "torch.float32", "autocast": False}]


def test_bf16_is_refused_where_the_cpu_would_emulate_it(cli, monkeypatch):
    import ptcli.devices

    monkeypatch.setattr(ptcli.devices, "bf16_native", lambda device: False)
    result = cli("classify-image", CAT, "--dtype", "bf16", "--device", "cpu")
    assert result.exit_code == 2
    assert "this CPU has no bf16 units (AVX-512 BF16 or AMX): bf16 would be emulated, slower than fp32" in result.stderr
    bad = cli("classify-image", CAT, "--dtype", "fp16")
    assert bad.exit_code == 2 and "--dtype must be one of fp32, bf16, not 'fp16'" in bad.stderr


def test_a_recipe_that_runs_in_fp32_only_refuses_bf16():
    from ptcli.errors import UsageError
    from ptcli.inference.precision import check_dtype
    from ptcli.plugins.recipe import DeviceSupport, Recipe

    import torch

    recipe = Recipe(name="plain", help="", devices=DeviceSupport(precisions=("fp32",)))
    with pytest.raises(UsageError, match=r"plain runs in fp32 only \(its precisions: fp32\)"):
        check_dtype(recipe, "bf16", torch.device("cpu"))
    assert check_dtype(recipe, "fp32", torch.device("cpu")) == "fp32"


@pytest.mark.skipif(not _bf16_here(), reason="this CPU has no bf16 units (AVX-512 BF16 or AMX)")
@pytest.mark.parametrize(("fmt", "suffix"), [("openvino", ".xml"), ("exported-program", ".pt2")])
def test_a_bf16_export_is_checked_and_classifies_as_fp32_does(cli, tmp_path, fmt, suffix):
    out = tmp_path / f"lite0{suffix}"
    result = cli("export", "--recipe", "classify-image", "-o", out, "--dtype", "bf16", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["dtype"] == "bf16" and report["check"]["passed"]
    assert all(row["top1_agreement"] == 1.0 and row["max_abs_error"] > 1e-4 for row in report["check"]["batches"])  # really bf16
    from ptcli.models import embedded

    assert embedded.read(out)["dtype"] == "bf16"
    fp32 = _rows(cli("classify-image", CAT, "--json"))[0]["predictions"]
    bf16 = _rows(cli("classify-image", CAT, "--json", "--checkpoint", out))[0]["predictions"]
    assert bf16[0]["label"] == fp32[0]["label"] == "Egyptian cat" and bf16[0]["score"] == pytest.approx(fp32[0]["score"], abs=0.05)


def test_bf16_exports_that_would_not_run_in_bf16_are_refused(cli, tmp_path):
    onnx = cli("export", "--recipe", "classify-image", "-o", tmp_path / "m.onnx", "--dtype", "bf16")
    assert onnx.exit_code == 2 and "onnxruntime's CPU provider has almost no bf16 kernels" in onnx.stderr
    both = cli("export", "--recipe", "classify-image", "-o", tmp_path / "m.pt2", "--dtype", "bf16", "--half")
    assert both.exit_code == 2 and "--dtype bf16, --half and --int8 are precisions; pick one" in both.stderr
    assert not list(tmp_path.iterdir())
