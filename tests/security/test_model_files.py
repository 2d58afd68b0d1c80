"""A model file from a stranger is data: crafted exports and sidecars never run code, through
any loader (`--checkpoint`, `eval`, `serve`), and are refused with one line naming the file.

Each attack writes a marker file if its code runs; every test asserts the marker is absent."""

import json
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import save_simplenet

CLASSES = ["red", "green", "blue"]


class _Payload:
    """A pickle that creates ``marker`` when it is loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _export(cli, tmp_path: Path, fmt: str = "exported-program", suffix: str = ".pt2") -> Path:
    checkpoint = save_simplenet(tmp_path / "net", image_size=16, classes=CLASSES)
    output = tmp_path / f"net{suffix}"
    result = cli("export", checkpoint, "--format", fmt, "-o", output)
    assert result.exit_code == 0, result.output
    return output


def _rewrite(source: Path, target: Path, change) -> Path:
    """A copy of the zip ``source`` with ``change(inner_name, data) -> data or None (drop)``
    applied to each file, and ``change(None, None)`` giving {name: data} to add."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as new:
        root = old.namelist()[0].split("/")[0]
        for info in old.infolist():
            inner = info.filename[len(root) + 1:]
            data = change(inner, old.read(info))
            if data is not None:
                new.writestr(info.filename, data)
        for inner, data in (change(None, None) or {}).items():
            new.writestr(f"{root}/{inner}", data)
    return target


@pytest.fixture
def pt2(cli, tmp_path):
    return _export(cli, tmp_path)


@pytest.fixture
def photo(tmp_path):
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.new("RGB", (20, 20), (200, 30, 30)).save(path)
    return path


def _evil_weights(pt2: Path, marker: Path) -> Path:
    def change(inner, data):
        if inner == "data/weights/model_weights_config.json":
            config = json.loads(data)
            first = next(iter(config["config"]))
            config["config"][first]["use_pickle"] = True
            return json.dumps(config).encode()
        if inner == "data/weights/weight_0":
            return pickle.dumps(_Payload(marker))
        return None if inner is None else data

    return _rewrite(pt2, pt2.with_name("evil.pt2"), change)


def _edit_json(source: Path, target: Path, part: str, edit) -> Path:
    """A copy of ``source`` whose JSON file ``part`` is changed in place by ``edit``."""
    def change(inner, data):
        if inner == part:
            value = json.loads(data)
            edit(value)
            return json.dumps(value).encode()
        return None if inner is None else data

    return _rewrite(source, target, change)


def _edit_program(pt2: Path, edit) -> Path:
    return _edit_json(pt2, pt2.with_name("evil.pt2"), "models/model.json", edit)


def _walk(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _code(marker: Path) -> str:
    return f"__import__('pathlib').Path({str(marker)!r}).touch()"


def _sympy_attack(marker):
    def edit(program):
        exprs = [node for node in _walk(program) if "expr_str" in node]
        assert exprs, "the export has no symbolic size to rewrite"
        for node in exprs:
            node["expr_str"] = _code(marker)
    return edit


def _guards_attack(marker):
    def edit(program):
        program["guards_code"] = [f"{_code(marker)} is None"]
    return edit


def _name_attack(marker):
    def edit(program):
        graph = program["graph_module"]["graph"]
        name = graph["inputs"][-1]["as_tensor"]["name"]
        evil = f"{name}={_code(marker)}"
        for node in _walk(program):
            for key in ("name",):
                if node.get(key) == name:
                    node[key] = evil
        graph["tensor_values"][evil] = graph["tensor_values"].pop(name)
    return edit


ATTACKS = {
    "pickled weights (use_pickle)": lambda pt2, marker: _evil_weights(pt2, marker),
    "a symbolic size that sympy would eval": lambda pt2, marker: _edit_program(pt2, _sympy_attack(marker)),
    "an input name written into the module's source": lambda pt2, marker: _edit_program(pt2, _name_attack(marker)),
    "an AOTInductor library": lambda pt2, marker: _rewrite(pt2, pt2.with_name("evil.pt2"), lambda inner, data: (
        {"data/aotinductor/model/model.so": b"\x7fELF"} if inner is None else data)),
    "a TorchScript object constant": lambda pt2, marker: _rewrite(pt2, pt2.with_name("evil.pt2"), lambda inner, data: (
        {"data/constants/custom_obj_0": pickle.dumps(_Payload(marker))} if inner is None else data)),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_crafted_pt2_never_runs_code_and_is_refused_in_one_line(cli, pt2, photo, tmp_path, attack):
    marker = tmp_path / "ran"
    evil = ATTACKS[attack](pt2, marker)
    for args in (("classify-image", photo, "--checkpoint", evil), ("eval", evil, photo.parent)):
        result = cli(*args)
        assert not marker.exists(), f"{attack}: code ran through {args[0]}"
        assert result.exit_code == 1, (attack, args[0], result.output)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and str(evil) in lines[0] and "refused" in lines[0], (attack, result.stderr)


def test_torch_itself_would_have_run_the_pickled_weights(pt2, tmp_path):
    """The attack is real: torch.export.load runs it (so the refusal above is what stops it)."""
    import torch

    marker = tmp_path / "ran"
    evil = _evil_weights(pt2, marker)
    try:
        torch.export.load(str(evil))
    except Exception:
        pass
    assert marker.exists()


@pytest.mark.parametrize("part", ["sample inputs", "guards code"])
def test_parts_torch_would_run_are_left_unread_and_the_model_still_runs(cli, pt2, photo, tmp_path, part):
    """torch.export.load retries sample inputs the restricted unpickler refuses with the full
    one, and execs the program's guards code; ptcli reads neither (guards are input checks
    that ptcli's own inputs need not)."""
    marker = tmp_path / "ran"
    if part == "sample inputs":
        evil = _rewrite(pt2, pt2.with_name("evil.pt2"), lambda inner, data: (
            pickle.dumps(_Payload(marker)) if inner == "data/sample_inputs/model.pt" else data) if inner else None)
    else:
        evil = _edit_program(pt2, _guards_attack(marker))
    result = cli("classify-image", photo, "--checkpoint", evil, "--json")
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    assert json.loads(result.stdout.splitlines()[0])["predictions"][0]["label"] in CLASSES


def test_the_safe_reader_gives_the_program_torch_gives(pt2):
    import torch

    from ptcli.models import pt2 as reader

    x = torch.rand(3, 3, 16, 16)
    ours, theirs = reader.load(pt2).module(), torch.export.load(str(pt2)).module()
    assert torch.equal(ours(x), theirs(x))


def test_a_zip_bomb_pt2_is_refused_from_its_directory(cli, pt2, photo, tmp_path):
    bomb = tmp_path / "bomb.pt2"
    with zipfile.ZipFile(pt2) as old, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as new:
        root = old.namelist()[0].split("/")[0]
        for info in old.infolist():
            new.writestr(info.filename, old.read(info))
        new.writestr(f"{root}/extra/padding", b"\0" * (300 * 2**20))
    assert bomb.stat().st_size < 2**20
    result = cli("classify-image", photo, "--checkpoint", bomb)
    assert result.exit_code == 1 and "inflate" in result.stderr, result.output


# --- sidecars name no code -------------------------------------------------------------------

def _with_sidecar(pt2: Path, target: Path, edit) -> Path:
    return _edit_json(pt2, target, "extra/ptcli.json", edit)


@pytest.mark.parametrize("key,value", [("runtime", "builtins:print"), ("runtime", "pathlib:Path.touch"),
                                       ("imports", ["this"]), ("imports", ["ptcli_model_ops"]), ("imports", "os")])
def test_a_sidecar_never_chooses_code(cli, pt2, photo, tmp_path, capsys, key, value):
    evil = _with_sidecar(pt2, tmp_path / "evil.pt2", lambda meta: meta.update({key: value}))
    result = cli("classify-image", photo, "--checkpoint", evil)
    assert result.exit_code == 1, result.output
    assert str(evil) in result.stderr and "never chooses code" in result.stderr
    assert "Beautiful is better than ugly" not in result.stdout + capsys.readouterr().out  # `import this` did not run
    assert "this" not in sys.modules or key != "imports"


def test_a_recipes_own_runtime_is_named_by_key_and_older_exports_keep_loading(tmp_path):
    from ptcli.models.trust import export_code, runtime_key
    from ptcli.errors import CheckpointError, PluginError
    from ptcli.plugins import get_plugins

    detect = get_plugins().recipe("detect")
    assert runtime_key(detect, "ptcli_detect.exporting:runtime") == "detector"
    assert export_code(detect, {"runtime": "detector", "imports": ["torchvision"]}, "m.onnx") == (
        "ptcli_detect.exporting:runtime", ("torchvision",))
    # written by an earlier ptcli: the dotted name the recipe declares
    assert export_code(detect, {"runtime": "ptcli_detect.exporting:runtime"}, "m.onnx")[0] == "ptcli_detect.exporting:runtime"
    with pytest.raises(CheckpointError, match="m.onnx"):
        export_code(detect, {"runtime": "ptcli_generate_text.cached:CachedLanguageModel"}, "m.onnx")
    with pytest.raises(PluginError, match="runtimes="):
        runtime_key(detect, "elsewhere:function")


def test_no_module_beside_the_model_is_imported_under_python_m_ptcli(cli, pt2, photo, tmp_path):
    """`python -m ptcli` (the torchrun form) puts the current folder first on the import path; a
    `ptcli_model_ops.py` or a module named like one the recipe imports, beside the model, never runs."""
    marker = tmp_path / "ran"
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(pt2, work / "model.pt2")
    shutil.copy(photo, work / "photo.png")
    code = f"import pathlib; pathlib.Path({str(marker)!r}).touch()\n"
    for name in ("ptcli_model_ops", "pluggy", "typer", "rich", "torchvision", "sympy", "PIL", "numpy", "timm", "safetensors"):
        (work / f"{name}.py").write_text(code)
    evil = _with_sidecar(work / "model.pt2", work / "evil.pt2", lambda meta: meta.update({"imports": ["ptcli_model_ops"]}))
    for model in ("model.pt2", evil.name):
        done = subprocess.run([sys.executable, "-m", "ptcli", "classify-image", "photo.png", "--checkpoint", model],
                              cwd=work, capture_output=True, text=True, timeout=300)
        assert not marker.exists(), (model, done.stderr[-2000:])
        assert done.returncode == (0 if model == "model.pt2" else 1), done.stderr[-2000:]


# --- TorchScript: its code is a program --------------------------------------------------------

import torch  # noqa: E402  (the scripted modules below need it at definition)


class _Writes(torch.nn.Module):
    """torch.save from TorchScript: writes any file (a .pth line in site-packages runs later)."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def forward(self, x):
        torch.save(x, self.marker)
        return x.mean(dim=[2, 3])


class _Reads(torch.nn.Module):
    """torch.from_file from TorchScript: reads any file the process can."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def forward(self, x):
        leaked = torch.from_file(self.secret, size=3, dtype=torch.uint8)
        return x.mean(dim=[2, 3]) + leaked.float()


@pytest.mark.parametrize("module", ["writes", "reads"])
def test_torchscript_that_touches_files_is_refused_before_it_runs(cli, photo, tmp_path, module):
    script = _export(cli, tmp_path, "torchscript", ".pt")
    with zipfile.ZipFile(script) as archive:
        sidecar = next(archive.read(n) for n in archive.namelist() if n.endswith("extra/ptcli.json"))
    marker = tmp_path / "written.pt"
    secret = tmp_path / "secret.txt"
    secret.write_text("abc")
    net = torch.jit.script(_Writes(str(marker)) if module == "writes" else _Reads(str(secret)))
    evil = tmp_path / "evil.pt"
    torch.jit.save(net, str(evil), _extra_files={"ptcli.json": sidecar})
    if module == "writes":  # the attack is real: torch runs it
        torch.jit.load(str(evil))(torch.zeros(1, 3, 16, 16))
        assert marker.exists()
        marker.unlink()
    for args in (("classify-image", photo, "--checkpoint", evil), ("eval", evil, photo.parent)):
        result = cli(*args)
        assert not marker.exists()
        assert result.exit_code == 1 and "refused" in result.stderr and "touches files" in result.stderr, result.output


def test_a_pt2_calling_a_file_operator_is_refused(cli, pt2, photo, tmp_path):
    def edit(program):
        nodes = program["graph_module"]["graph"]["nodes"]
        nodes[0]["target"] = "torch.ops.aten.save.default"

    result = cli("classify-image", photo, "--checkpoint", _edit_program(pt2, edit))
    assert result.exit_code == 1 and "aten.save" in result.stderr, result.output


def test_a_plain_torchscript_export_still_loads(cli, photo, tmp_path):
    script = _export(cli, tmp_path, "torchscript", ".pt")
    result = cli("classify-image", photo, "--checkpoint", script, "--json")
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_serve_refuses_a_crafted_pt2_named_in_models_yaml(cli, pt2, tmp_path):
    """The third loader: a models.yaml entry. The server does not start serving it: exit 1 with
    the file's name, and nothing in it ran."""
    marker = tmp_path / "ran"
    evil = _evil_weights(pt2, marker)
    config = tmp_path / "models.yaml"
    config.write_text(f"models:\n  - {{name: evil, checkpoint: {evil}}}\n")
    from test_serve import _free_port

    done = subprocess.run([sys.executable, "-m", "ptcli", "serve", "--config", str(config), "--port", str(_free_port()),
                           "--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert not marker.exists()
    assert done.returncode == 1 and str(evil) in done.stderr and "refused" in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize("config", [
    {"model_type": "gpt2", "auto_map": {"AutoModelForCausalLM": "evil.Model"}},
    {"model_type": "gpt2", "_attn_implementation": "kernels-community/evil-attention"},
    {"model_type": "gpt2", "attn_implementation": "kernels-community/evil-attention"},
])
def test_a_language_model_checkpoints_config_names_no_code(cli, tmp_path, config):
    """generate-text rebuilds a fine-tuned model from the config in its sidecar: a config that
    names model code or a Hub attention kernel (which transformers would fetch and run) is refused."""
    import torch

    from ptcli.models.checkpoints import save_checkpoint
    from ptcli_generate_text.models import FINE_TUNED

    checkpoint = save_checkpoint(tmp_path / "lm", {"w": torch.zeros(1)}, recipe="generate-text", model=FINE_TUNED,
                                 extra={"model_args": {"config": {**config, "n_layer": 1, "n_embd": 8, "n_head": 1}}})
    result = cli("generate-text", "hello", "--checkpoint", checkpoint, "--max-new-tokens", "1")
    assert result.exit_code == 1, result.output
    assert "auto_map" in result.stderr or "attention implementation" in result.stderr, result.stderr
