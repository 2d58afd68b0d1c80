"""Running an export: onnxruntime for ONNX, OpenVINO's runtime for its IR, torch.export.load
and torch.jit.load for the others, behind one callable that recipes use where they would use
their torch module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ptcli.errors import CheckpointError, UsageError, flatten

from ptcli.models import embedded


class ExportedModel:
    """An export as a module: ``model(*tensors)`` (or keyword tensors by input name) gives the
    output tensor, or a tuple of them. Float inputs are cast to the export's precision; a
    fixed-batch export takes any number of inputs, run in batches of its size."""

    def __init__(self, path: str | Path, meta: dict | None = None, ops: tuple[str, ...] = ()) -> None:
        self.path = Path(path)
        self.meta = meta if meta is not None else embedded.read(self.path)
        #: Modules that register the custom operators the export calls (torchvision's nms), as
        #: the recipe declares them (Recipe.model_ops): never read from the file.
        self.ops = tuple(ops)
        self.format = self.meta.get("export_format", "")
        self.input_names = [entry["name"] for entry in self.meta.get("inputs", [])]
        self.output_names = [entry["name"] for entry in self.meta.get("outputs", [])]
        self.batch = self.meta.get("batch")  # "dynamic", an int, or None (one input per call)
        # Loaded where it first runs (a recipe's `.to(device)` first, or the CPU at the first
        # call), so that a CUDA run does not load the file twice.
        self.device = "cpu"
        self._run = None

    # --- module-like surface, so that recipes' `net.to(device).eval()` works unchanged -----

    def to(self, device=None, *_args, **_kwargs) -> ExportedModel:
        """To another device (the file is loaded again there); a dtype or memory format is the
        export's own and stays."""
        import torch

        if device is None or isinstance(device, torch.dtype):
            return self
        device = str(device)
        if device != self.device or self._run is None:
            self._load(device)
        return self

    def eval(self) -> ExportedModel:
        return self

    def half(self) -> ExportedModel:
        """An export's precision is fixed when it is made (--half); inputs are cast to it."""
        return self

    def float(self) -> ExportedModel:
        return self

    def parameters(self):
        return iter(())

    # --------------------------------------------------------------------------------------

    def _load(self, device: str) -> None:
        import torch

        import importlib

        kind = device.split(":")[0]
        for module in self.ops:
            importlib.import_module(module)
        try:
            if self.format == "onnx":
                self._run = _onnx_runner(self.path, kind, self.input_names)
            elif self.format == "openvino":
                self._run = _openvino_runner(self.path, kind, self.input_names, self.meta.get("dtype", "fp32"))
            elif self.format == "exported-program":
                from ptcli.models import pt2

                module = pt2.load(self.path).module().to(device)
                self._run = lambda *xs: module(*xs)
            elif self.format == "torchscript":
                from ptcli.models import torchscript

                torchscript.check(self.path)
                module = torch.jit.load(str(self.path), map_location=device)
                module.eval()
                self._run = lambda *xs: module(*xs)
            else:
                raise UsageError(f"{self.path}: unknown export format {self.format!r}")
        except (UsageError, CheckpointError):
            raise
        except Exception as exc:  # a damaged or foreign file fails inside the runtime
            raise CheckpointError(f"cannot load the {self.format} export {self.path}: {flatten(exc, 300)}") from exc
        self.device = device

    def __call__(self, *args, **kwargs):
        import torch

        if kwargs:
            args = (*args, *(kwargs[name] for name in self.input_names[len(args):] if name in kwargs))
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self._input_dtype(), torch.float32)
        args = tuple(a.to(self.device, dtype) if a.is_floating_point() else a.to(self.device) for a in args)
        args = self._padded(args)
        if self._run is None:
            self._load(self.device)
        with torch.no_grad():
            if isinstance(self.batch, int) and args and args[0].shape[0] != self.batch:
                return self._in_batches(args)
            return self._run(*args)

    def _input_dtype(self) -> str:
        """What float inputs are cast to: the export's weights' precision (an OpenVINO IR keeps
        fp32 weights and inputs whatever it computes in)."""
        if self.meta.get("half"):
            return "fp16"
        return "fp32" if self.format == "openvino" else self.meta.get("dtype", "fp32")

    def _padded(self, args: tuple) -> tuple:
        """Inputs shorter than a fixed dimension of the export, padded up to it with the value
        the export's sidecar names (a recurrent text model's pad token)."""
        import torch.nn.functional as F

        pad_values = self.meta.get("pad_values") or {}
        shapes = {entry["name"]: entry.get("shape", []) for entry in self.meta.get("inputs", [])}
        padded = []
        for name, tensor in zip(self.input_names, args):
            shape = shapes.get(name, [])
            if name in pad_values and len(shape) == tensor.dim():
                for axis in range(1, tensor.dim()):
                    size = shape[axis]
                    if isinstance(size, int) and tensor.shape[axis] < size:
                        widths = [0, 0] * (tensor.dim() - 1 - axis) + [0, size - tensor.shape[axis]]
                        tensor = F.pad(tensor, widths, value=pad_values[name])
            padded.append(tensor)
        return tuple(padded)

    def _in_batches(self, args: tuple):
        """Run a fixed-batch export on any number of rows: chunks of its size, the last one
        padded with copies of its final row, the padding dropped from the outputs."""
        import torch

        size, rows = self.batch, args[0].shape[0]
        outputs = []
        for start in range(0, rows, size):
            chunk = [a[start:start + size] for a in args]
            short = size - chunk[0].shape[0]
            if short:
                chunk = [torch.cat([c, c[-1:].expand(short, *c.shape[1:])]) for c in chunk]
            out = self._run(*chunk)
            outputs.append(tuple(o[: size - short] for o in out) if isinstance(out, tuple) else out[: size - short])
        if isinstance(outputs[0], tuple):
            return tuple(torch.cat(parts) for parts in zip(*outputs))
        return torch.cat(outputs)


def _onnx_runner(path: Path, kind: str, input_names: list[str]):
    import onnxruntime as ort
    import torch

    if kind == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UsageError("onnxruntime here has no CUDA provider; install onnxruntime-gpu, or run with --device cpu")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    elif kind == "cpu":
        providers = ["CPUExecutionProvider"]
    else:
        raise UsageError(f"ONNX exports run on cpu or cuda (onnxruntime), not {kind}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # onnxruntime's own warnings are about its graph optimiser
    session = ort.InferenceSession(str(path), options, providers=providers)
    device = "cuda" if kind == "cuda" else "cpu"

    def run(*tensors):
        feed = {name: t.detach().cpu().contiguous().numpy() for name, t in zip(input_names, tensors)}
        out = [torch.from_numpy(o).to(device) for o in session.run(None, feed)]
        return out[0] if len(out) == 1 else tuple(out)

    return run


def require(module: str):
    """OpenVINO or NNCF, imported; a usage error saying what to install when they are not here."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"OpenVINO exports need {module}: pip install 'ptcli[openvino]' (openvino and nncf)") from None


def _openvino_runner(path: Path, kind: str, input_names: list[str], dtype: str = "fp32"):
    """OpenVINO's CPU plugin, or its GPU plugin for --device cuda where OpenVINO sees a GPU
    (an Intel one: OpenVINO does not run on NVIDIA GPUs)."""
    import torch

    openvino = require("openvino")

    core = openvino.Core()
    if kind == "cuda":
        if not any(d.startswith("GPU") for d in core.available_devices):
            raise UsageError(f"OpenVINO sees no GPU here (devices: {', '.join(core.available_devices)}); "
                             "run OpenVINO exports with --device cpu")
        target = "GPU"
    elif kind == "cpu":
        target = "CPU"
    else:
        raise UsageError(f"OpenVINO exports run on cpu (or an Intel GPU), not {kind}")
    if not path.with_suffix(".bin").is_file():
        raise CheckpointError(f"{path.with_suffix('.bin')} is missing: an OpenVINO export is the .xml and its .bin")
    # OpenVINO's CPU plugin computes in bf16 where the CPU has AMX (this one does), which moves a
    # classifier's logits by about 0.1: exports run at the precision they were made in.
    config = {"INFERENCE_PRECISION_HINT": "bf16" if dtype == "bf16" else "f32"} if target == "CPU" else {}
    if target == "CPU":
        config["INFERENCE_NUM_THREADS"] = torch.get_num_threads()
    held = _CompiledModel(core.compile_model(str(path), target, config))

    def run(*tensors):
        feed = {name: t.detach().cpu().contiguous().numpy() for name, t in zip(input_names, tensors)}
        results = held.request.infer(feed)
        out = [torch.from_numpy(results[output].copy()) for output in held.compiled.outputs]
        return out[0] if len(out) == 1 else tuple(out)

    return run


class _CompiledModel:
    """An OpenVINO compiled model and its request. OpenVINO's CPU plugin gives the thread that
    runs a model an alternate signal stack and, when the model goes, puts back the one it found:
    models released in another order than they were made leave the stack of one already freed,
    and the next signal a Python handler takes (a DataLoader worker's SIGCHLD, Ctrl-C) then kills
    the process with SIGSEGV. Releasing through here puts a dangling stack right."""

    def __init__(self, compiled) -> None:
        self.compiled, self.request = compiled, compiled.create_infer_request()

    def __del__(self) -> None:
        self.request = self.compiled = None
        drop_dangling_signal_stack()


def drop_dangling_signal_stack() -> None:
    """Disable this thread's alternate signal stack if it lies in memory no longer mapped (Linux)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return

    class Stack(ctypes.Structure):
        _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]

    libc = ctypes.CDLL(None)
    current = Stack()
    if libc.sigaltstack(None, ctypes.byref(current)) != 0 or not current.ss_sp or current.ss_flags & 2:  # SS_DISABLE
        return
    with open("/proc/self/maps") as maps:
        for line in maps:
            start, end = (int(part, 16) for part in line.split(maxsplit=1)[0].split("-"))
            if start <= current.ss_sp < end:
                return
    off = Stack(None, 2, 0)
    libc.sigaltstack(ctypes.byref(off), None)


def load(path: str | Path, meta: dict, recipe) -> Any:
    """The export at ``path`` as a callable module, wrapped by the runtime its sidecar names
    among those ``recipe`` declares (ptcli.models.trust)."""
    from ptcli.models.trust import export_code

    runtime, ops = export_code(recipe, meta, path)
    model = ExportedModel(path, meta, ops)
    if runtime is not None:
        from ptcli.refs import load_ref

        return load_ref(runtime)(model)
    return model
