"""Prepares an fp32 ONNX graph so that ONNX Runtime's INT8 weights lose less: each output
channel's weights clipped where that lowers their rounding error, and each layer's bias moved
by the mean error its INT8 weights will add (empirical bias correction, Nagel et al. 2019,
"Data-Free Quantization Through Weight Equalization and Bias Correction").

On EfficientNet-Lite0 the weights' rounding, not the activations', cost most of INT8's
agreement with fp32: weights alone flipped 6.4% of 297 held-out photo crops, activations alone
3.7% (a simulation in torch with ONNX Runtime's arithmetic). Its depthwise layers hold nine
weights a channel, so one channel's rounding errors do not average out, and the BatchNorm
folded into them gives channels ranges far apart.

The correction takes each layer's mean input per channel over the whole image to stand for
its mean under every kernel offset: exact for 1x1 layers, off by the borders for wider ones,
and, like any per-channel bias, it fixes a channel's mean over the image, not each position's
(right for networks that pool globally before their classifier).

Each weight is then rounded to its INT8 grid by what the layer's inputs make of its error
(GPTQ, Frantar et al. 2022: one input at a time, each rounding's error spread over the inputs
not yet rounded, weighed by the inputs' second moment on the calibration feeds), not to the
nearest level. On Lite0 that cut the weights' share of INT8's divergence from fp32 (the mean
KL divergence of the class probabilities on 849 held-out inputs) from 0.0027 to 0.0011.

The quantizer that follows (ONNX Runtime, int8 weights per channel, symmetric) must compute
the same scale as ``quantized`` here: the largest magnitude of the channel over 127. Weights
handed to it on that grid come back as they are; tests check both against the quantized file."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

#: The clipping ratios tried for each output channel (1.0: no clipping).
RATIOS = tuple(1.0 - 0.02 * i for i in range(26))
LEVELS = 127
#: The widest input patch (a group's input channels times the kernel's area) whose rounding
#: follows its inputs: its second moment is a patch x patch float64 matrix (2304: 42 MB).
#: Wider layers round to the nearest level.
WIDEST_PATCH = 2304
#: About the most output positions of one input that count toward a layer's second moment (a
#: regular grid: the layer's stride, widened).
POSITIONS = 1024
#: The most calibration feeds (evenly spaced) whose patches count toward the second moments:
#: with the grid of POSITIONS, tens of thousands of patches a layer, plenty for a moment of at
#: most WIDEST_PATCH inputs, and the export stays within seconds of its old time.
MOMENT_FEEDS = 64
#: The fewest patches a layer's second moment needs, per input of its patch: from fewer, the
#: rounding would fit the calibration inputs' few directions (a classifier's Gemm sees one
#: pooled row a feed), and the layer rounds to the nearest level.
PATCHES_PER_INPUT = 2
#: The most memory all layers' second moments may hold together (float64): the layers past it,
#: in the graph's order, round to the nearest level. Lite0's take 0.11 GB.
MOMENT_BYTES = 1 << 30
#: GPTQ's damping: a share of the mean input power added to the diagonal, so that inputs that
#: never vary still give an invertible moment.
DAMPING = 0.01


def quantized(weights, axis: int = 0):
    """The weights as symmetric per-channel INT8 gives them back (channels along ``axis``)."""
    import numpy as np

    moved = np.moveaxis(weights, axis, 0)
    flat = moved.reshape(moved.shape[0], -1)
    scale = np.abs(flat).max(axis=1) / LEVELS
    scale[scale == 0] = 1.0
    back = np.clip(np.round(flat / scale[:, None]), -LEVELS, LEVELS) * scale[:, None]
    return np.moveaxis(back.reshape(moved.shape), 0, axis).astype(weights.dtype)


def clipped(weights, axis: int = 0):
    """Each channel clipped at the ratio of its largest magnitude whose INT8 copy is nearest to
    the original weights (squared error)."""
    import numpy as np

    moved = np.moveaxis(weights, axis, 0)
    flat = moved.reshape(moved.shape[0], -1)
    largest = np.abs(flat).max(axis=1, keepdims=True)
    best, best_error = flat, np.full(flat.shape[0], np.inf)
    for ratio in RATIOS:
        limit = largest * ratio
        candidate = np.clip(flat, -limit, limit)
        error = ((quantized(candidate) - flat) ** 2).sum(axis=1)
        better = error < best_error
        best = np.where(better[:, None], candidate, best)
        best_error = np.minimum(error, best_error)
    return np.moveaxis(best.reshape(moved.shape), 0, axis).astype(weights.dtype)


def _layers(graph, initializers: dict):
    """(node, weight name, the axis of its output channels): Conv and Gemm nodes whose weights
    are constants that no other node shares."""
    from collections import Counter

    from onnx import helper

    uses = Counter(name for node in graph.node for name in node.input)
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        if uses[node.input[1]] != 1 or (len(node.input) > 2 and node.input[2] and uses[node.input[2]] != 1):
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Gemm":
            if attributes.get("alpha", 1.0) != 1.0 or attributes.get("beta", 1.0) != 1.0 or attributes.get("transA", 0):
                continue
            yield node, node.input[1], 0 if attributes.get("transB", 0) else 1
        else:
            yield node, node.input[1], 0


def _patches(node, value, weight_shape):
    """One feed's input to a layer as (groups, patch, positions) float32 patches in the order of
    the layer's weights, on a grid of at most about POSITIONS output positions; None where the
    rounding stays nearest (a layer other than a 2-D Conv or a Gemm, or one wider than
    WIDEST_PATCH)."""
    import math

    import torch
    import torch.nn.functional as F
    from onnx import helper

    x = torch.from_numpy(value)
    if node.op_type == "Gemm":
        return x.reshape(x.shape[0], -1).T.unsqueeze(0) if x[0].numel() <= WIDEST_PATCH else None
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    _, per_group, *kernel = weight_shape
    groups = attributes.get("group", 1)
    if len(kernel) != 2 or attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") \
            or per_group * kernel[0] * kernel[1] > WIDEST_PATCH:
        return None
    top, left, bottom, right = attributes.get("pads", [0, 0, 0, 0])
    strides, dilations = attributes.get("strides", [1, 1]), attributes.get("dilations", [1, 1])
    x = F.pad(x, (left, right, top, bottom)) if top or left or bottom or right else x
    outputs = math.prod((size - d * (k - 1) - 1) // s + 1 for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations))
    sparser = max(1, math.ceil(math.sqrt(outputs / POSITIONS)))  # every sparser-th output position, each way
    strides = [s * sparser for s in strides]
    if kernel == [1, 1]:
        cols = x[:, :, ::strides[0], ::strides[1]].flatten(2)
    else:
        cols = F.unfold(x, kernel, dilation=dilations, stride=strides)  # (rows, channels x kernel area, positions)
    rows, _, positions = cols.shape
    return cols.reshape(rows, groups, -1, positions).permute(1, 2, 0, 3).reshape(groups, -1, rows * positions)


def _statistics(path: Path, layers: list, feeds: list[dict], initializers: dict, moments: bool = True) -> tuple[dict, dict]:
    """Over every feed, in fp32: each layer input's mean per channel (by tensor name), and each
    layer's input patches' second moment, (groups, patch, patch) (by node name; a layer with
    too few patches for its width, PATCHES_PER_INPUT, or past MOMENT_BYTES has none; with
    ``moments`` False, none has)."""
    import math

    import numpy as np
    import onnx
    import onnxruntime as ort

    names = sorted({node.input[0] for node, _, _ in layers})
    model = onnx.load(str(path))
    known = {output.name for output in model.graph.output}
    for name in names:
        if name not in known:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    sums, counts, second, patches = {}, {}, {}, {}
    measured, budget = [], MOMENT_BYTES
    for layer in layers:
        node, weight_name, axis = layer
        dims = tuple(initializers[weight_name].dims)
        groups = next((a.i for a in node.attribute if a.name == "group"), 1) if node.op_type == "Conv" else 1
        width = math.prod(dims) // dims[axis]  # inputs a group's output channel reads
        budget -= groups * width * width * 8
        if budget >= 0 and moments:
            measured.append(layer)
    spacing = -(-len(feeds) // MOMENT_FEEDS)
    for index, feed in enumerate(feeds):
        values = dict(zip(names, session.run(names, feed)))
        for name, value in values.items():
            axes = tuple(i for i in range(value.ndim) if i != 1)
            sums[name] = sums.get(name, 0) + value.astype(np.float64).sum(axis=axes)
            counts[name] = counts.get(name, 0) + value.size // value.shape[1]
        for node, weight_name, _ in measured if index % spacing == 0 else ():
            cols = _patches(node, values[node.input[0]], tuple(initializers[weight_name].dims))
            if cols is not None:
                moment = (cols @ cols.transpose(1, 2)).double() / cols.shape[2]
                second[node.name] = second.get(node.name, 0) + moment
                patches[node.name] = patches.get(node.name, 0) + cols.shape[2]
    used = len(range(0, len(feeds), spacing))
    second = {name: m / used for name, m in second.items() if patches[name] >= PATCHES_PER_INPUT * m.shape[-1]}
    return {name: sums[name] / counts[name] for name in names}, second


def rounded(weights, scale, moment, damping: float = DAMPING):
    """``weights`` (groups, channels, patch) on the INT8 grids of ``scale`` (groups, channels),
    rounded one input at a time, each rounding's error spread over the inputs not yet rounded
    so that the layer's output moves least on inputs of second moment ``moment`` (groups,
    patch, patch): GPTQ's update, with its Cholesky form of the inverse."""
    import torch

    w = torch.as_tensor(weights, dtype=torch.float64).clone()
    scale = torch.as_tensor(scale, dtype=torch.float64)[:, :, None]
    h = torch.as_tensor(moment, dtype=torch.float64).clone()
    diagonal = torch.diagonal(h, dim1=1, dim2=2)  # a view: what is done to it is done to h
    power = diagonal.mean(dim=1, keepdim=True).clamp_min(1e-12)
    diagonal[diagonal <= 0] = 1.0  # an input that is always zero: its weight's rounding costs nothing
    diagonal += damping * power
    upper = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    out = torch.empty_like(w)
    for i in range(w.shape[2]):
        column = w[:, :, i:i + 1]
        q = torch.clamp(torch.round(column / scale), -LEVELS, LEVELS) * scale
        out[:, :, i:i + 1] = q
        error = (column - q) / upper[:, None, i, i, None]
        w[:, :, i + 1:] -= error * upper[:, None, i, i + 1:]
    return out.numpy()


def _on_grid(kept, axis: int, moment):
    """The clipped weights ``kept`` rounded by ``rounded``, in their own layout. A channel
    whose largest weight no longer sets its scale (an update moved it) rounds to the nearest
    level, as the quantizer would: else the quantizer would choose another grid."""
    import numpy as np

    moved = np.moveaxis(kept, axis, 0)
    flat = moved.reshape(moved.shape[0], -1).astype(np.float64)
    scale = np.abs(flat).max(axis=1) / LEVELS
    scale[scale == 0] = 1.0
    groups = moment.shape[0]
    grid = rounded(flat.reshape(groups, -1, flat.shape[1]), scale.reshape(groups, -1), moment).reshape(flat.shape)
    same_scale = np.isclose(np.abs(grid).max(axis=1), scale * LEVELS, rtol=1e-6)
    grid = np.where(same_scale[:, None], grid, quantized(flat))
    return np.moveaxis(grid.reshape(moved.shape), 0, axis).astype(kept.dtype)


def prepare(path: Path, out: Path, feeds: list[dict], kept: Collection[str] = (), by_inputs: bool = True) -> int:
    """Writes ``out``: the graph at ``path`` with its Conv and Gemm weights clipped per channel,
    rounded to their INT8 grid by what their inputs on ``feeds`` (the calibration inputs) make
    of the error (with ``by_inputs`` False: left for the quantizer to round to the nearest
    level), and their biases corrected for the mean error that remains. The layers named in
    ``kept`` stay in fp32 and as they are: clipped and corrected, they would carry the error of
    a rounding that never happens. Returns how many layers it changed."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    layers = [layer for layer in _layers(graph, initializers) if layer[0].name not in kept]
    if not layers:
        onnx.save(model, str(out))
        return 0
    means, moments = _statistics(path, layers, feeds, initializers, by_inputs)
    for node, weight_name, axis in layers:
        weights = numpy_helper.to_array(initializers[weight_name])
        kept = clipped(weights, axis)
        kept = _on_grid(kept, axis, moments[node.name]) if node.name in moments else kept
        error = quantized(kept, axis) - weights  # what INT8 adds to the original weights
        mean = means[node.input[0]]
        if node.op_type == "Gemm":
            shift = error.T @ mean if axis == 1 else error @ mean
        else:
            groups = next((a.i for a in node.attribute if a.name == "group"), 1)
            per_input = error.reshape(error.shape[0], error.shape[1], -1).sum(axis=2)  # (out, in / groups)
            inputs = mean.reshape(groups, -1)  # (groups, in / groups)
            group_of = np.arange(error.shape[0]) // (error.shape[0] // groups)
            shift = (per_input * inputs[group_of]).sum(axis=1)
        initializers[weight_name].CopyFrom(numpy_helper.from_array(kept, weight_name))
        bias_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if bias_name is None:
            bias_name = weight_name + ".bias_corrected"
            bias = np.zeros(error.shape[axis], dtype=weights.dtype)
            graph.initializer.append(numpy_helper.from_array(bias, bias_name))
            initializers[bias_name] = graph.initializer[-1]
            while len(node.input) < 3:
                node.input.append("")
            node.input[2] = bias_name
        bias = numpy_helper.to_array(initializers[bias_name])
        initializers[bias_name].CopyFrom(numpy_helper.from_array((bias - shift).astype(bias.dtype), bias_name))
    onnx.save(model, str(out))
    return len(layers)
