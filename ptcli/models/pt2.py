"""A ``.pt2`` (torch.export) archive read as data. ``torch.export.load`` is not safe for a
stranger's file: it unpickles weights and constants marked ``use_pickle`` and sample inputs
that the restricted unpickler refuses (``weights_only=False``), loads AOTInductor shared
libraries, evaluates every symbolic size with ``sympy.sympify`` (an ``eval``), ``exec``s the
program's ``guards_code``, and writes input names into the Python source of the module it
builds. So ptcli checks the archive first (``check``), refusing with one line anything outside
the plain layout of ``torch.export.save`` and every string that would become code, and then
builds the program itself (``load``) from the checked JSON and the raw tensor bytes, with no
unpickler on the path and the guards and metadata that are only text for people left out."""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ptcli.errors import CheckpointError

from .archives import open_checked

MODEL = "model"
#: Files a plain torch.export.save archive holds, below its one root folder.
_LAYOUT = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/model\.json|data/weights/model_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/model_constants_config\.json|data/constants/tensor_\d+"
    r"|data/sample_inputs/model\.pt|extra/[A-Za-z0-9._-]+)"
)
#: Why the usual things outside that layout are refused, by the path they start with.
_REFUSED = {
    "data/aotinductor/": "an AOTInductor package (compiled code that would be loaded)",
    "data/executorch/": "an ExecuTorch program",
    "data/constants/custom_obj_": "a TorchScript object (unpickled by torch)",
    "data/weights/model.pt": "weights in the old pickled layout",
    "data/constants/model.pt": "constants in the old pickled layout",
    "xl_model_weights/": "weights outside the archive",
}
#: The largest JSON part read (the program's graph; a large detector's is tens of MB).
MAX_JSON_BYTES = 256 * 2**20

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FQN = re.compile(r"([A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*)?")
_TARGET = re.compile(r"torch\.ops\.(aten|prims|quantized|torchvision|higher_order)(\.[A-Za-z_]\w*){1,2}"
                     r"|_operator\.[a-z_]+|math\.[a-z_]+|torch\.sym_[a-z_]+")
#: Operators that touch files: torch.save writes any file (a .pth line runs at Python's start).
_FILE_OPS = re.compile(r"\.(save|from_file|_from_file)(\.|$)")
#: Keys whose values become Python identifiers in the module torch builds, or attribute paths.
_NAME_KEYS = {"name", "as_name", "constant_name", "tensor_constant_name", "custom_obj_name"}
_FQN_KEYS = {"parameter_name", "buffer_name", "fqn", "target_fqn"}
#: What a symbolic size may be written with (sympy's srepr of torch's own size expressions):
#: these calls, symbol names, numbers and quoted names; no attribute access, no other name.
_SYMPY_NAMES = {
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Mod", "Max", "Min", "floor", "ceiling", "Abs",
    "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "StrictGreaterThan", "LessThan", "GreaterThan",
    "Equality", "Unequality", "And", "Or", "Not", "true", "false", "True", "False", "oo", "zoo", "nan",
    "Infinity", "NegativeInfinity", "Half", "One", "Zero", "NegativeOne", "BooleanTrue", "BooleanFalse",
    "Piecewise", "ExprCondPair", "IntInfinity", "NegativeIntInfinity",
    # torch.utils._sympy.functions, as the deserializer names them
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv", "LShift",
    "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator",
    "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity", "OpaqueUnaryFn_sqrt",
    # keyword arguments of Symbol and Float
    "positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite", "precision", "commutative",
}
_SYMBOL = re.compile(r"[a-z]{1,4}\d+")
_EXPR_TOKEN = re.compile(r"\s*(?:([A-Za-z_]\w*)|(\d+(?:\.\d*)?(?:e[+-]?\d+)?)|('[A-Za-z0-9_.+-]*')|(\*\*|[-+*/%(),=<>!]=?))")


@dataclass
class Archive:
    """What ``check`` found: the archive's root folder and its parsed, checked JSON parts."""

    root: str
    program: dict
    weights: dict
    constants: dict


def _refuse(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path} is refused: {why}; ptcli loads only plain torch.export archives "
                           "(`ptcli export --format exported-program` makes them)")


def check(path: str | Path) -> Archive:
    """The archive's parts, checked; a CheckpointError naming the file and the first thing
    that could run code or take memory out of proportion to the file."""
    path = Path(path)
    with open_checked(path, ".pt2 file", _refuse) as archive:
        infos = archive.infolist()
        roots = {info.filename.split("/", 1)[0] for info in infos}
        if len(roots) != 1:
            raise _refuse(path, "its files are not under one folder")
        root = roots.pop()
        names = set()
        for info in infos:
            inner = info.filename[len(root) + 1:]
            for prefix, why in _REFUSED.items():
                if inner.startswith(prefix):
                    raise _refuse(path, f"it holds {why} ({inner})")
            if info.is_dir():
                continue
            if not _LAYOUT.fullmatch(inner):
                raise _refuse(path, f"it holds {inner!r}, which a torch.export archive of one model does not")
            names.add(inner)
        for needed in ("models/model.json", "data/weights/model_weights_config.json"):
            if needed not in names:
                raise _refuse(path, f"it has no {needed}")

        def read_json(inner: str) -> dict:
            info = archive.getinfo(f"{root}/{inner}")
            if info.file_size > MAX_JSON_BYTES:
                raise _refuse(path, f"its {inner} is {info.file_size / 2**20:.0f} MiB")
            try:
                value = json.loads(archive.read(info))
            except (ValueError, RecursionError) as exc:
                raise _refuse(path, f"its {inner} is not valid JSON ({type(exc).__name__})") from None
            if not isinstance(value, dict):
                raise _refuse(path, f"its {inner} is not a JSON object")
            return value

        program = read_json("models/model.json")
        weights = read_json("data/weights/model_weights_config.json")
        constants = (read_json("data/constants/model_constants_config.json")
                     if "data/constants/model_constants_config.json" in names else {"config": {}})
    for part, folder, prefix in ((weights, "data/weights/", "weight_"), (constants, "data/constants/", "tensor_")):
        _check_payloads(path, part, folder, prefix, names)
    _check_program(path, program)
    return Archive(root, program, weights, constants)


def _check_payloads(path: Path, config: dict, folder: str, prefix: str, names: set) -> None:
    entries = config.get("config")
    if not isinstance(entries, dict):
        raise _refuse(path, f"its {folder} config has no entries")
    for key, meta in entries.items():
        if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
            raise _refuse(path, f"its tensor {key!r} is stored as a pickle (use_pickle), which would run code")
        file = meta.get("path_name")
        if not isinstance(file, str) or not re.fullmatch(prefix + r"\d+", file) or folder + file not in names:
            raise _refuse(path, f"its tensor {key!r} names no {folder}{prefix}N file of the archive")
        if not isinstance(meta.get("tensor_meta"), dict):
            raise _refuse(path, f"its tensor {key!r} has no tensor_meta")


def _check_program(path: Path, program: dict) -> None:
    """Every string of the graph that torch would turn into code: names, attribute paths,
    operator targets and symbolic sizes."""
    stack: list = [program]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if key == "metadata" or key == "guards_code":
                continue  # text for people, left out by load
            if isinstance(value, str):
                if key in _NAME_KEYS and not _NAME.fullmatch(value):
                    raise _refuse(path, f"its graph names {value[:60]!r}, which is not a plain identifier")
                if key in _FQN_KEYS and not _FQN.fullmatch(value):
                    raise _refuse(path, f"its graph has the attribute path {value[:60]!r}")
                if key == "target" and (not _TARGET.fullmatch(value) or _FILE_OPS.search(value)):
                    raise _refuse(path, f"its graph calls {value[:60]!r}, which is not an operator models compute with")
                if key == "expr_str":
                    check_sympy_expression(path, value)
            elif isinstance(value, (dict, list)):
                stack.append(value)


def check_sympy_expression(path: Path, text: str) -> None:
    """``text`` uses only sympy's constructors of sizes, symbol names, numbers and quoted names."""
    position = 0
    while position < len(text):
        match = _EXPR_TOKEN.match(text, position)
        if match is None or match.end() == position:
            if text[position:].strip() == "":
                break
            raise _refuse(path, f"its symbolic size {text[:60]!r} is not an expression of sizes")
        name = match.group(1)
        if name is not None and name not in _SYMPY_NAMES and not _SYMBOL.fullmatch(name):
            raise _refuse(path, f"its symbolic size {text[:60]!r} names {name!r}")
        position = match.end()


def _tensor(data: bytes, meta: dict):
    import torch
    from torch._export.serde import schema
    from torch._export.serde.serialize import (_dict_to_dataclass, deserialize_scalar_type, deserialize_size,
                                               deserialize_storage_offset, deserialize_stride)

    tensor_meta = _dict_to_dataclass(schema.TensorMeta, meta["tensor_meta"])
    dtype = deserialize_scalar_type(tensor_meta.dtype)
    flat = torch.frombuffer(bytearray(data), dtype=dtype) if data else torch.zeros(0, dtype=dtype)
    tensor = torch.as_strided(flat, size=deserialize_size(tensor_meta.sizes), stride=deserialize_stride(tensor_meta.strides),
                              storage_offset=deserialize_storage_offset(tensor_meta.storage_offset))
    if meta.get("is_param"):
        return torch.nn.Parameter(tensor, requires_grad=tensor_meta.requires_grad)
    return tensor


def load(path: str | Path):
    """The ExportedProgram in a checked archive, built without unpickling or evaluating
    anything from the file."""
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass

    path = Path(path)
    checked = check(path)
    program = json.loads(json.dumps(checked.program))  # a copy to strip
    program["guards_code"] = []
    graph = program.get("graph_module", {}).get("graph", {})
    for node in graph.get("nodes", []) if isinstance(graph, dict) else []:
        if isinstance(node, dict):
            node["metadata"] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            def payloads(config: dict, folder: str) -> dict:
                return {key: _tensor(archive.read(f"{checked.root}/{folder}{meta['path_name']}"), meta)
                        for key, meta in config["config"].items()}

            state_dict = payloads(checked.weights, "data/weights/")
            constants = payloads(checked.constants, "data/constants/")
        serialized = _dict_to_dataclass(schema.ExportedProgram, program)
        return ExportedProgramDeserializer().deserialize(serialized, state_dict, constants, None)
    except CheckpointError:
        raise
    except Exception as exc:  # a damaged archive fails inside torch's deserializer
        from ptcli.errors import flatten

        raise CheckpointError(f"cannot load the exported program {path}: {flatten(exc, 300)}") from exc
