"""Chooses each activation's INT8 range by the error it gives, not by the widest value seen.

ONNX Runtime's static quantization gives each activation tensor the range of every value the
calibration inputs made (MinMax): one rare value far out stretches the step every other value
is rounded to. Here each tensor's range is narrowed, both ends by one ratio (zero stays in it),
to the ratio whose rounding and clipping together move the tensor's values least (mean squared
error) on a sample of them from the calibration inputs, as NNCF's and AIMET's MSE range
estimators do.

A tensor's own error is not the model's: on small networks with heavy-tailed inputs the
narrowed ranges took the output farther from fp32, so the export keeps them only where the
whole model comes closer to fp32 on the calibration inputs (``distances``; quantize._static).

On EfficientNet-Lite0 the ranges chosen were 0.62-0.78 of MinMax's on its residual tensors,
and the mean KL divergence of INT8's class probabilities from fp32's fell from 0.0059 to
0.0046 on 1125 held-out inputs (bench/int8_agreement.py), at the same speed: the ranges are
handed to ONNX Runtime's quantizer, which computes its biases' scales from them."""

from __future__ import annotations

from pathlib import Path

#: The narrowings tried, as a share of the MinMax range (1.0: MinMax's own).
RATIOS = tuple(0.4 + 0.02 * i for i in range(31))
#: Values sampled from each tensor per calibration feed, and the most feeds sampled: 64 x
#: 4096 values a tensor.
SAMPLES, SAMPLED_FEEDS = 4096, 64
#: The most values sampled over all tensors together (float32: 256 MB); a graph with many
#: activations samples fewer of each (Lite0's 59 take 15 million).
SAMPLED_VALUES = 64 << 20
LEVELS = 255


def activation_ranges(quantized: Path) -> dict[str, tuple[float, float]]:
    """(rmin, rmax) of each activation a QDQ graph quantizes (uint8, per tensor), by the name
    of the fp32 tensor its QuantizeLinear reads."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(quantized)).graph
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    ranges = {}
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in constants or len(node.input) < 3:
            continue
        scale, zero = constants.get(node.input[1]), constants.get(node.input[2])
        if scale is None or zero is None or scale.size != 1 or zero.dtype != np.uint8:
            continue
        scale, zero = float(scale), int(zero)
        ranges[node.input[0]] = (-zero * scale, (LEVELS - zero) * scale)
    return ranges


def _rounded(values, low: float, high: float):
    """``values`` through uint8 quantization of range [low, high], as ONNX Runtime does it."""
    import numpy as np

    scale = (high - low) / LEVELS
    zero = np.clip(np.round(-low / scale), 0, LEVELS)
    return (np.clip(np.round(values / scale) + zero, 0, LEVELS) - zero) * scale


def narrowed(values, low: float, high: float) -> tuple[float, float]:
    """The range [low, high] narrowed by the ratio of RATIOS whose rounding moves ``values``
    least (squared error)."""
    import numpy as np

    if not high > low:
        return low, high
    errors = [float(np.mean((_rounded(values, low * r, high * r) - values) ** 2)) for r in RATIOS]
    best = RATIOS[int(np.argmin(errors))]
    return low * best, high * best


def chosen(path: Path, ranges: dict[str, tuple[float, float]], feeds: list[dict]) -> dict[str, tuple[float, float]]:
    """Each named tensor's range from ``ranges`` narrowed (``narrowed``) on values sampled from
    the fp32 graph at ``path`` on at most SAMPLED_FEEDS of ``feeds`` (evenly spaced)."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    known = {output.name for output in model.graph.output}
    names = sorted(ranges)
    for name in names:
        if name not in known:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    draw = np.random.default_rng(0)
    samples: dict[str, list] = {name: [] for name in names}
    sampled = feeds[::-(-len(feeds) // SAMPLED_FEEDS)]
    each = max(1, min(SAMPLES, SAMPLED_VALUES // max(1, len(names) * len(sampled))))
    for feed in sampled:
        for name, value in zip(names, session.run(names, feed)):
            flat = value.reshape(-1)
            samples[name].append(flat[draw.integers(0, flat.size, each)] if flat.size > each else flat.copy())
    return {name: narrowed(np.concatenate(samples[name]).astype(np.float64), *ranges[name]) for name in names}


def distances(reference: Path, candidates: list[Path], feeds: list[dict]) -> list[float]:
    """How far each graph in ``candidates`` is from the one at ``reference`` on at most
    SAMPLED_FEEDS of ``feeds``: each output's mean squared difference over its mean square in
    ``reference``, summed over the outputs."""
    import numpy as np
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (reference, *candidates)]
    errors, power = np.zeros((len(candidates), len(sessions[0].get_outputs()))), 0.0
    for feed in feeds[::-(-len(feeds) // SAMPLED_FEEDS)]:
        expected = [np.asarray(e, np.float64) for e in sessions[0].run(None, feed)]
        power = power + np.array([np.mean(e ** 2) for e in expected])
        for row, session in enumerate(sessions[1:]):
            errors[row] += [np.mean((np.asarray(g, np.float64) - e) ** 2) for e, g in zip(expected, session.run(None, feed))]
    return [float(row.sum()) for row in errors / np.maximum(power, 1e-30)]
