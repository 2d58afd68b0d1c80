"""`ptcli benchmark`: every format and precision of one model, exported, checked, scored and
timed; a format that fails is a row that says why."""

import json

import pytest

from conftest import make_imagefolder


@pytest.fixture
def simplenet(tmp_path):
    from conftest import save_simplenet

    return save_simplenet(tmp_path / "simple", image_size=32, classes=["blue", "green", "red"])


def _rows(result) -> list[dict]:
    assert result.exit_code == 0, result.stdout + result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


FIELDS = {"format", "precision", "size_mb", "metric", "value", "latency_ms", "throughput", "check"}


def test_every_row_is_exported_checked_scored_by_eval_and_timed(cli, simplenet, tmp_path):
    data = make_imagefolder(tmp_path / "colours", {"val": 8}, size=24)
    rows = _rows(cli("benchmark", simplenet, "--data", data, "--batch", "4", "--repeats", "2", "--json"))
    assert [(r["format"], r["precision"]) for r in rows] == [
        ("eager", "fp32"), ("eager", "bf16"), ("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32"), ("openvino", "bf16"),
        ("openvino", "int8"), ("exported-program", "fp32"), ("torchscript", "fp32")]
    assert all(set(r) == FIELDS for r in rows)
    accuracy = json.loads(cli("eval", simplenet, data, "--json").stdout)["accuracy"]
    for row in rows:
        if row["precision"] == "fp32":  # every fp32 format scores what `ptcli eval` scores
            assert row["check"] == "ok" and row["metric"] == "accuracy" and row["value"] == pytest.approx(accuracy, abs=1e-6), row
        if row["check"] == "ok":
            assert row["latency_ms"] > 0 and row["throughput"] > 0 and row["size_mb"] > 0
        else:  # a row that did not make it says why, in one line
            assert row["latency_ms"] is None and "\n" not in row["check"] and row["check"]
    from ptcli.exporting.benchmark import bf16_supported

    bf16 = rows[1]
    assert (bf16["check"] == "ok") == bf16_supported()
    if bf16_supported():
        assert bf16["metric"] == "top1_agreement" and 0 <= bf16["value"] <= 1
        assert rows[5]["check"] == "ok" and rows[5]["metric"] == "accuracy"  # an export is scored by eval
    for row in (rows[3], rows[6]):  # calibrated on --data; kept only if top-1 agrees on >= 95% of held-out inputs
        assert row["check"] == "ok" or row["check"].startswith("the INT8 "), row
    fp32 = {r["format"]: r["size_mb"] for r in rows if r["precision"] == "fp32"}
    assert all(r["size_mb"] < 0.5 * fp32[r["format"]] for r in rows if r["precision"] == "int8" and r["check"] == "ok")


def test_without_data_rows_agree_with_eager_and_int8_says_what_it_needs(cli, simplenet):
    rows = _rows(cli("benchmark", simplenet, "--formats", "eager,onnx,onnx-int8", "--repeats", "1", "--json"))
    assert [r["format"] for r in rows] == ["eager", "onnx", "onnx"]
    assert rows[0]["metric"] == rows[1]["metric"] == "top1_agreement" and rows[1]["value"] == 1.0
    assert rows[2]["check"] == "needs --calibration DIR (or --data DIR): real inputs to calibrate on" and rows[2]["value"] is None
    human = cli("benchmark", simplenet, "--formats", "eager,onnx", "--repeats", "1")
    assert human.exit_code == 0 and human.stdout.splitlines()[0].split()[:3] == ["format", "precision", "size"]
    assert "fastest checked: " in human.stdout and "x eager fp32's throughput" in human.stdout
    assert "benchmark: row 2/2, onnx: exporting and checking" in human.stderr


def test_a_format_that_fails_is_a_row_and_the_others_go_on(cli, simplenet, monkeypatch):
    from ptcli.exporting import writers

    def broken(*args, **kwargs):
        raise RuntimeError("the exporter fell over\nwith a second line")

    monkeypatch.setattr(writers, "_torchscript", broken)
    rows = _rows(cli("benchmark", simplenet, "--formats", "torchscript,onnx", "--repeats", "1", "--json"))
    assert [r["format"] for r in rows] == ["onnx", "torchscript"]
    assert rows[0]["check"] == "ok"
    assert rows[1]["check"].startswith("torch.jit.trace could not export simplenet: ") and "\n" not in rows[1]["check"]


def test_benchmark_usage_errors(cli, simplenet, tmp_path):
    bad = cli("benchmark", simplenet, "--formats", "onnx,tensorflow")
    assert bad.exit_code == 2 and "--formats takes eager, eager-bf16, onnx" in bad.stderr and "(got tensorflow)" in bad.stderr
    missing = cli("benchmark", simplenet, "--data", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "no such file or folder" in missing.stderr
    both = cli("benchmark", simplenet, "--recipe", "classify-image")
    assert both.exit_code == 2 and "CKPT already names its recipe" in both.stderr
