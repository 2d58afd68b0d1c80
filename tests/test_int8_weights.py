"""ptcli.exporting.int8_weights: the weights ONNX Runtime's INT8 gives back are the ones it
predicts, clipping only ever lowers a channel's rounding error, and the corrected biases
cancel the mean error INT8 weights add (exactly, for a network that is linear)."""

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from ptcli.exporting import int8_weights  # noqa: E402


class Linear(torch.nn.Module):
    """Convolutions without padding or activations, global pooling, then a Gemm: every
    layer's mean output is a linear function of its input's mean. With 1x1 kernels that
    function is the channel means' own, so the correction is exact; wider kernels see each
    offset's share of the image, which the whole image's mean stands for."""

    def __init__(self, kernel: int = 3, size: int = 8) -> None:
        super().__init__()
        self.size = size
        self.conv = torch.nn.Conv2d(3, 8, kernel, bias=False)
        self.depthwise = torch.nn.Conv2d(8, 8, kernel, groups=8)
        self.pointwise = torch.nn.Conv2d(8, 6, 1)
        self.fc = torch.nn.Linear(6, 5)

    def forward(self, x):
        return self.fc(self.pointwise(self.depthwise(self.conv(x))).mean((2, 3)))


def _export(tmp_path, model):
    torch.manual_seed(0)
    for parameter in model.parameters():  # channels whose ranges lie far apart, outliers included
        parameter.data = torch.randn_like(parameter) * torch.rand(parameter.shape[0], *[1] * (parameter.dim() - 1)) * 3
    path = tmp_path / "model.onnx"
    torch.onnx.export(model.eval(), (torch.randn(1, 3, model.size, model.size),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    return path


def _feeds(count=24, size=8):
    generator = np.random.default_rng(0)
    return [{"x": (generator.standard_normal((1, 3, size, size)) + 0.7).astype(np.float32)} for _ in range(count)]


def _run(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, feed)[0] for feed in feeds])


def _weights(path):
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def test_the_int8_weights_it_predicts_are_the_ones_onnx_runtime_writes(tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    path = _export(tmp_path, Linear())
    feeds = iter(_feeds())

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)

    quantize_static(str(path), str(tmp_path / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    original, written = _weights(path), _weights(tmp_path / "q.onnx")
    checked = 0
    for name, weights in original.items():
        if weights.ndim < 2:
            continue
        axis = 0
        scale = written[f"{name}_scale"].reshape([-1] + [1] * (weights.ndim - 1))
        back = written[f"{name}_quantized"].astype(np.float32) * scale
        np.testing.assert_allclose(back, int8_weights.quantized(weights, axis), rtol=1e-6, atol=1e-7)
        checked += 1
    assert checked == 4


def test_clipping_never_rounds_a_channel_worse_and_clips_heavy_tails():
    generator = np.random.default_rng(1)
    weights = generator.laplace(size=(16, 2000)).astype(np.float32)  # many weights, a few far out
    weights[0] = generator.uniform(-1, 1, 2000)  # no tail: nothing to gain by clipping
    kept = int8_weights.clipped(weights)
    error = lambda w: ((int8_weights.quantized(w) - weights) ** 2).sum(axis=1)  # noqa: E731
    assert (error(kept) <= error(weights)).all()
    clipped = np.abs(kept).max(axis=1) < np.abs(weights).max(axis=1)
    assert clipped.sum() >= 5 and (error(kept)[clipped] < error(weights)[clipped]).all()  # where it clips, it pays
    assert not clipped[0] and np.array_equal(kept[0], weights[0])


@pytest.mark.parametrize(("kernel", "size", "left"), [(1, 8, 1e-4), (3, 32, 0.1)])
def test_corrected_biases_cancel_the_mean_error_of_int8_weights(tmp_path, kernel, size, left):
    path = _export(tmp_path, Linear(kernel, size))
    feeds = _feeds(size=size)
    assert int8_weights.prepare(path, tmp_path / "prepared.onnx", feeds) == 4
    prepared = _weights(tmp_path / "prepared.onnx")

    def with_int8_weights(source, out):  # what INT8 computes with those weights, in float
        model = onnx.load(str(source))
        for tensor in model.graph.initializer:
            array = prepared[tensor.name] if tensor.name in prepared else None
            if array is not None and array.ndim >= 2:
                tensor.CopyFrom(onnx.numpy_helper.from_array(int8_weights.quantized(array), tensor.name))
        onnx.save(model, str(out))
        return out

    def int8_of_original(out):
        model = onnx.load(str(path))
        for tensor in model.graph.initializer:
            array = onnx.numpy_helper.to_array(tensor)
            if array.ndim >= 2:
                tensor.CopyFrom(onnx.numpy_helper.from_array(int8_weights.quantized(array), tensor.name))
        onnx.save(model, str(out))
        return out

    exact = _run(path, feeds).mean(axis=0)
    plain = _run(int8_of_original(tmp_path / "plain.onnx"), feeds).mean(axis=0)
    corrected = _run(with_int8_weights(tmp_path / "prepared.onnx", tmp_path / "corrected.onnx"), feeds).mean(axis=0)
    before, after = np.abs(plain - exact).max(), np.abs(corrected - exact).max()
    assert before > 1e-3  # INT8 weights do move this network's mean output
    assert after < left * before, (before, after)
    # a layer with no bias of its own gets one
    model = onnx.load(str(tmp_path / "prepared.onnx"))
    first = next(node for node in model.graph.node if node.op_type == "Conv")
    assert len(first.input) == 3 and first.input[2].endswith(".bias_corrected")


def test_a_layer_kept_in_fp32_is_left_as_it_is_and_the_others_are_prepared(tmp_path):
    """The layer the quantizer will leave in fp32 (ptcli keeps a small first layer so): its
    weights clipped or its bias moved would carry the error of a rounding that never happens."""
    path = _export(tmp_path, Linear(3, 8))
    graph = onnx.load(str(path)).graph
    first = next(node for node in graph.node if node.op_type == "Conv")
    assert int8_weights.prepare(path, tmp_path / "prepared.onnx", _feeds(), kept=[first.name]) == 3
    before, after = _weights(path), _weights(tmp_path / "prepared.onnx")
    assert np.array_equal(after[first.input[1]], before[first.input[1]])
    prepared = onnx.load(str(tmp_path / "prepared.onnx")).graph
    assert len(next(node for node in prepared.node if node.name == first.name).input) == 2  # no bias given it
    others = [node for node in graph.node if node.op_type in ("Conv", "Gemm") and node is not first]
    assert all(not np.array_equal(after[node.input[2]], before[node.input[2]]) for node in others)


def test_rounding_by_the_inputs_moves_a_layer_less_than_rounding_to_the_nearest_level():
    """GPTQ's rounding, on inputs whose channels move together (as a layer's do): every weight
    lands on its channel's INT8 grid, and the layer's output moves less than with each weight
    rounded to its nearest level, over groups of their own (a depthwise layer's)."""
    generator = np.random.default_rng(2)
    groups, channels, patch = 3, 16, 24
    mixing = generator.standard_normal((groups, patch, patch)) + 2.0  # correlated inputs with a shared mean
    inputs = np.einsum("gij,gjn->gin", mixing, generator.standard_normal((groups, patch, 4000)))
    moment = inputs @ inputs.transpose(0, 2, 1) / inputs.shape[2]
    weights = generator.standard_normal((groups, channels, patch)) * 0.05
    scale = np.abs(weights).max(axis=2) / int8_weights.LEVELS
    grid = int8_weights.rounded(weights, scale, moment)
    levels = grid / scale[:, :, None]
    assert np.allclose(levels, np.round(levels), atol=1e-6) and np.abs(np.round(levels)).max() <= int8_weights.LEVELS
    nearest = int8_weights.quantized(weights.reshape(-1, patch)).reshape(weights.shape)

    def moved(q):  # the output's mean squared change, per group
        return (np.einsum("gcp,gpn->gcn", q - weights, inputs) ** 2).mean(axis=(1, 2))

    assert (moved(grid) < 0.5 * moved(nearest)).all(), (moved(grid), moved(nearest))


def test_weights_prepared_on_their_grid_come_back_from_onnx_runtime_as_they_are(tmp_path):
    """The rounding chosen here is the one the file keeps: ONNX Runtime recomputes each
    channel's scale from its largest weight, which the preparation leaves on the grid's edge."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    path = _export(tmp_path, Linear(3, 8))
    feeds = _feeds()
    assert int8_weights.prepare(path, tmp_path / "prepared.onnx", feeds) == 4
    pending = iter(feeds)

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(pending, None)

    quantize_static(str(tmp_path / "prepared.onnx"), str(tmp_path / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    prepared, written, original = _weights(tmp_path / "prepared.onnx"), _weights(tmp_path / "q.onnx"), _weights(path)
    layers = [name for name, weights in original.items() if weights.ndim >= 2]
    assert len(layers) == 4
    for name in layers:
        scale = written[f"{name}_scale"].reshape([-1] + [1] * (prepared[name].ndim - 1))
        np.testing.assert_allclose(written[f"{name}_quantized"].astype(np.float32) * scale, prepared[name], rtol=1e-6, atol=1e-7)
    # and that rounding is not simply the nearest one: some weights went the other way
    assert any(not np.allclose(prepared[name], int8_weights.quantized(int8_weights.clipped(original[name])), atol=1e-7)
               for name in layers)


def test_layers_past_the_memory_budget_for_moments_round_to_the_nearest_level(tmp_path, monkeypatch):
    """The second moments of every layer are held at once: past MOMENT_BYTES, the later layers
    (in the graph's order) round to their nearest level, and the preparation still ends."""
    path = _export(tmp_path, Linear(3, 8))
    original = _weights(path)
    layers = [name for name, weights in original.items() if weights.ndim >= 2]  # conv, depthwise, pointwise, fc
    conv_moment = 27 * 27 * 8  # one group, 3 channels x 3 x 3 inputs
    monkeypatch.setattr(int8_weights, "MOMENT_BYTES", conv_moment)
    assert int8_weights.prepare(path, tmp_path / "prepared.onnx", _feeds()) == 4
    prepared = _weights(tmp_path / "prepared.onnx")
    # a layer left to the quantizer's nearest rounding is written clipped, off its grid
    nearest = {name: np.allclose(prepared[name], int8_weights.clipped(original[name]), atol=1e-7) for name in layers}
    assert not nearest[layers[0]] and all(nearest[name] for name in layers[1:]), nearest


class Grouped(torch.nn.Module):
    """A plain, a grouped (2 groups of 4 channels), a depthwise and a pointwise layer, with
    ReLUs between: the layouts the rounding reads its inputs' patches in."""

    def __init__(self) -> None:
        super().__init__()
        self.size = 12
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.grouped = torch.nn.Conv2d(8, 8, 3, groups=2, stride=2, padding=(0, 1))
        self.depthwise = torch.nn.Conv2d(8, 8, 3, groups=8, padding=1)
        self.pointwise = torch.nn.Conv2d(8, 6, 1)
        self.fc = torch.nn.Linear(6, 5)

    def forward(self, x):
        x = torch.relu(self.grouped(torch.relu(self.conv(x))))
        return self.fc(self.pointwise(torch.relu(self.depthwise(x))).mean((2, 3)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_layer_rounded_by_its_inputs_moves_less_on_inputs_not_calibrated_on(tmp_path, seed):
    """In the graph's own layouts (plain, grouped with stride and uneven padding, depthwise,
    pointwise, Gemm): each layer's output moves less with its weights rounded by their
    calibration inputs than rounded to the nearest level, measured on inputs of another draw."""
    path = _export(tmp_path, Grouped())
    generator = np.random.default_rng(seed)
    mixing = generator.standard_normal((3, 3)) + 1.0  # colour channels that move together, as a photo's do

    def draw(count):
        noise = generator.standard_normal((count, 3, 12, 12))
        smooth = (noise + np.roll(noise, 1, axis=2) + np.roll(noise, 1, axis=3)) / 3  # neighbours that move together
        return [{"x": (np.einsum("ij,njhw->nihw", mixing, smooth)[i:i + 1] + 0.5).astype(np.float32)} for i in range(count)]

    graph = onnx.load(str(path)).graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    layers = list(int8_weights._layers(graph, initializers))
    _, calibrated = int8_weights._statistics(path, layers, draw(64), initializers)
    _, held_out = int8_weights._statistics(path, layers, draw(32), initializers)
    assert [node.op_type for node, _, _ in layers] == ["Conv"] * 4 + ["Gemm"] and set(calibrated) == set(held_out)
    for node, weight_name, axis in layers:
        weights = onnx.numpy_helper.to_array(initializers[weight_name])
        kept = int8_weights.clipped(weights, axis)
        moment = held_out[node.name].numpy()

        def moved(q):  # the layer's mean squared output change on the held-out patches
            error = np.moveaxis(q - weights, axis, 0).reshape(moment.shape[0], -1, moment.shape[-1])
            return float(np.einsum("gcp,gpq,gcq->", error, moment, error))

        rounded = moved(int8_weights._on_grid(kept, axis, calibrated[node.name]))
        assert rounded < 0.9 * moved(int8_weights.quantized(kept, axis)), node.name
