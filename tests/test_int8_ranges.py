"""ptcli.exporting.int8_ranges: an activation's range is narrowed only where that lowers its
rounding and clipping error, the rounding it predicts is ONNX Runtime's, the ranges it chooses
are the ones the quantized file holds, and they bring INT8 closer to fp32 on inputs the
calibration never saw."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from ptcli.exporting import int8_ranges, quantize  # noqa: E402


def test_a_range_narrows_where_rare_values_stretch_it_and_stays_where_values_fill_it():
    draw = np.random.default_rng(0)
    tailed = draw.standard_t(3, 200_000)  # most values near zero, a few far out
    low, high = float(tailed.min()), float(tailed.max())
    narrow = int8_ranges.narrowed(tailed, low, high)
    error = lambda r: float(np.mean((int8_ranges._rounded(tailed, *r) - tailed) ** 2))  # noqa: E731
    assert narrow[1] < high and narrow[0] > low and error(narrow) < 0.8 * error((low, high))  # measured: 0.68
    assert np.isclose(narrow[0] / low, narrow[1] / high)  # one ratio for both ends: zero stays where it was
    filled = draw.uniform(0, 6, 200_000)  # a ReLU6's values, spread over the whole range
    assert int8_ranges.narrowed(filled, 0.0, float(filled.max())) == (0.0, float(filled.max()))


def test_its_rounding_is_onnx_runtimes_quantize_then_dequantize():
    from onnx import TensorProto, helper

    low, high = -1.7, 4.3
    scale = (high - low) / 255
    zero = int(round(-low / scale))
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
        "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
        [helper.make_tensor("s", TensorProto.FLOAT, [], [scale]), helper.make_tensor("z", TensorProto.UINT8, [], [zero])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).uniform(-3, 6, 10_000).astype(np.float32)  # past both ends too
    x[:3] = [(k - zero + 0.5) * scale for k in (10, 11, 12)]  # halves: ONNX rounds them to even
    np.testing.assert_allclose(int8_ranges._rounded(x.astype(np.float64), low, high), session.run(None, {"x": x})[0],
                               rtol=0, atol=1e-5)


class Spiked(torch.nn.Module):
    """A convolution, then a residual stream, then global pooling: the inputs' rare spikes set
    MinMax's ranges while hardly moving the pooled output."""

    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.second = torch.nn.Conv2d(16, 16, 1)
        self.third = torch.nn.Conv2d(16, 16, 1)
        self.fc = torch.nn.Linear(16, 5)

    def forward(self, x):
        x = torch.relu(self.first(x))
        x = x + self.second(x)
        x = x + self.third(x)
        return self.fc(x.mean((2, 3)))


def _spiked_inputs(draw, count):
    x = draw.standard_normal((count, 3, 24, 24))
    x += (draw.random(x.shape) < 1e-4) * draw.standard_normal(x.shape) * 60  # one value in 10,000 far out
    return torch.from_numpy(x.astype(np.float32))


def _quantized_both_ways(tmp_path, monkeypatch, seed):
    """(the error on held-out inputs, the exporter's words, the ranges in the file) for ptcli's
    INT8 of a Spiked network, then the same with MinMax's ranges kept."""
    torch.manual_seed(seed)
    path = tmp_path / "fp32.onnx"
    torch.onnx.export(Spiked().eval(), (torch.randn(1, 3, 24, 24),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    draw = np.random.default_rng(seed)
    calibration, held_out = _spiked_inputs(draw, 48), _spiked_inputs(draw, 64)
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": held_out.numpy()})[0]
    results = []
    for keep_minmax in (False, True):
        if keep_minmax:
            monkeypatch.setattr(int8_ranges, "chosen", lambda _path, ranges, _feeds: ranges)
        target = tmp_path / f"int8-{keep_minmax}.onnx"
        target.write_bytes(path.read_bytes())
        how = quantize.quantize(SimpleNamespace(quantize="static", input_names=("x",)), "onnx", target, (calibration,), {})
        out = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(None, {"x": held_out.numpy()})[0]
        results.append((float(((out - reference) ** 2).mean()), how, int8_ranges.activation_ranges(target)))
    return results


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_narrowed_ranges_are_the_files_and_bring_int8_closer_on_inputs_not_calibrated_on(tmp_path, monkeypatch, seed):
    chosen = {}
    real = int8_ranges.chosen
    monkeypatch.setattr(int8_ranges, "chosen", lambda *args: chosen.update(real(*args)) or chosen)
    (ours, how, written), (minmax, _, widest) = _quantized_both_ways(tmp_path, monkeypatch, seed)
    assert "activation ranges narrowed by their rounding error" in how
    assert set(written) == set(chosen) == set(widest) and len(chosen) >= 3
    for name, (low, high) in chosen.items():  # as chosen, up to ONNX Runtime's integer zero point
        assert written[name][1] - written[name][0] == pytest.approx(high - low, rel=1e-5)
    assert sum(written[name][1] < 0.9 * widest[name][1] for name in written) >= 2  # the spikes' ranges narrow
    assert ours < 0.9 * minmax  # measured: 0.66, 0.84, 0.78


def test_narrowed_ranges_farther_from_fp32_on_the_calibration_inputs_are_not_kept(tmp_path, monkeypatch):
    def distances(_reference, candidates, _feeds):  # whatever the files, the narrowed one is farthest
        return [1.0 if "narrowed" in file.name else 0.5 for file in candidates]

    monkeypatch.setattr(int8_ranges, "distances", distances)
    (_, how, written), (_, _, widest) = _quantized_both_ways(tmp_path, monkeypatch, 0)
    assert "activation ranges from their widest calibration values" in how
    assert written == widest


@pytest.mark.parametrize("closer", ["gptq", "nearest"])
def test_the_weights_rounding_closer_to_fp32_on_the_calibration_inputs_is_the_one_kept(tmp_path, monkeypatch, closer):
    from onnx import numpy_helper

    from ptcli.exporting import int8_weights

    def distances(_reference, candidates, _feeds):
        return [0.1 if closer in file.name else 0.5 for file in candidates]

    monkeypatch.setattr(int8_ranges, "distances", distances)
    (_, how, _), _ = _quantized_both_ways(tmp_path, monkeypatch, 0)
    assert ("rounded by their inputs (GPTQ)" if closer == "gptq" else "rounded to their nearest level") in how
    original = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "fp32.onnx")).graph.initializer}
    written = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "int8-False.onnx")).graph.initializer}
    nearest = []
    for name, weights in original.items():
        if weights.ndim == 4:  # the convolutions, on their grids as ONNX Runtime wrote them
            back = written[f"{name}_quantized"].astype(np.float32) * written[f"{name}_scale"].reshape(-1, 1, 1, 1)
            nearest.append(np.allclose(back, int8_weights.quantized(int8_weights.clipped(weights)), rtol=1e-6, atol=1e-7))
    assert len(nearest) == 3 and (all(nearest) if closer == "nearest" else not all(nearest))
