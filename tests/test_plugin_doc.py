"""docs/plugins.md's plugin, built from the page's own code blocks and installed: a Predictor
with one option and its declaration (under 80 lines) get the command, video, serve with
options, /v2 with typed outputs, an export checked and loaded back, eval and a real `plugins
check`; and every ptcli name the page uses exists."""

import importlib
import json
import re
import subprocess
import sys

import httpx
import pytest

from conftest import REPO, run_ptcli, write_yaml

DOC = REPO / "docs" / "plugins.md"


def doc_files() -> dict[str, str]:
    """The page's code blocks that begin with ``# file: PATH``, by path."""
    files = {}
    for block in re.findall(r"```[a-z]*\n(.*?)```", DOC.read_text(), flags=re.S):
        first, _, rest = block.partition("\n")
        if first.startswith("# file: "):
            files[first[len("# file: "):].strip()] = rest
    return files


@pytest.fixture(scope="module")
def glow(tmp_path_factory):
    """The plugin installed into a folder of its own: the environment that finds it."""
    import os

    source, site = tmp_path_factory.mktemp("glow-src"), tmp_path_factory.mktemp("glow-site")
    for path, text in doc_files().items():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        (source / path).write_text(text)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps", "--no-index",
                           "--target", str(site), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return {"PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}


def test_the_plugin_is_a_predictor_and_a_declaration_under_80_lines():
    files = doc_files()
    assert set(files) == {"pyproject.toml", "ptcli_glow/__init__.py", "ptcli_glow/predictor.py"}
    assert sum(len(files[name].splitlines()) for name in files if name.endswith(".py")) < 80


def test_every_ptcli_name_the_page_uses_exists():
    names = set(re.findall(r"`(ptcli(?:\.[A-Za-z_]\w*)+)", DOC.read_text()))
    assert len(names) > 20
    missing = []
    for name in sorted(names):
        parts = name.split(".")
        for split in range(len(parts), 0, -1):  # the longest importable module, then attributes
            try:
                target = importlib.import_module(".".join(parts[:split]))
            except ImportError:
                continue
            try:
                for attribute in parts[split:]:
                    target = getattr(target, attribute)
            except AttributeError:
                missing.append(name)
            break
        else:
            missing.append(name)
    assert not missing, missing


def _json(result):
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_the_documented_plugin_works_everywhere(glow, tmp_path):
    from test_serve import Server
    from video_files import make_video

    cat = REPO / "examples" / "cat.jpg"
    helped = run_ptcli("glow", "--help", env=glow)
    assert "--gamma GAMMA" in helped.stdout and "0.1<=x<=10.0" in helped.stdout and "--vid-stride" in helped.stdout
    plain, = _json(run_ptcli("glow", cat, "--json", env=glow))
    lifted, = _json(run_ptcli("glow", cat, "--gamma", "2", "--json", env=glow))
    assert 0.2 < plain["brightness"] < 0.8 and lifted["brightness"] == pytest.approx(plain["brightness"] ** 0.5, abs=2e-4)
    wrong = run_ptcli("glow", cat, "--gamma", "0", env=glow)
    assert wrong.returncode == 2 and "--gamma" in wrong.stderr

    video = make_video(tmp_path / "clip.mp4", frames=6)
    frames = _json(run_ptcli("glow", video, "--vid-stride", "2", "--json", env=glow))
    assert [f["frame"] for f in frames] == [0, 2, 4] and all(0 <= f["brightness"] <= 1 for f in frames)

    onnx = tmp_path / "glow.onnx"
    exported, = _json(run_ptcli("export", "--recipe", "glow", "-o", onnx, "--json", env=glow))
    assert exported["check"]["passed"] and "top1_agreement" not in exported["check"]["batches"][0]  # numbers: no classes
    from_file, = _json(run_ptcli("glow", cat, "--checkpoint", onnx, "--gamma", "2", "--json", env=glow))
    assert from_file["brightness"] == pytest.approx(lifted["brightness"], abs=1e-4)
    (tmp_path / "cat.jpg").write_bytes(cat.read_bytes())
    (tmp_path / "labels.csv").write_text(f"cat.jpg,{plain['brightness'] + 0.01}\n")
    report, = _json(run_ptcli("eval", onnx, tmp_path / "labels.csv", "--json", env=glow))
    assert report == {"images": 1, "mean_abs_error": pytest.approx(0.01, abs=2e-4)}

    config = write_yaml(tmp_path / "models.yaml", {"models": [{"recipe": "glow", "options": {"gamma": 2}}]})
    server = Server("--config", config, "--device", "cpu", env=glow)
    try:
        server.wait_ready()
        url = f"{server.url}/predict"
        assert httpx.post(url, content=cat.read_bytes(), headers={"Content-Type": "image/jpeg"}, timeout=30).json() \
            == {"brightness": lifted["brightness"]}
        four = httpx.post(url, params={"gamma": "4"}, files={"file": ("cat.jpg", cat.read_bytes())}, timeout=30).json()
        assert four == {"input": "cat.jpg", "brightness": pytest.approx(plain["brightness"] ** 0.25, abs=2e-4)}
        import base64

        body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                            "data": [base64.b64encode(cat.read_bytes()).decode()]}], "parameters": {"gamma": 1}}
        outputs = {o["name"]: o for o in httpx.post(f"{server.url}/v2/models/glow/infer", json=body, timeout=30).json()["outputs"]}
        assert outputs["brightness"]["datatype"] == "FP32" and outputs["brightness"]["data"] == [pytest.approx(plain["brightness"], abs=1e-4)]
        bad = httpx.post(url, params={"gama": "4"}, content=cat.read_bytes(), headers={"Content-Type": "image/jpeg"}, timeout=30)
        assert bad.status_code == 400 and "'gama' is not an option of this model; the options are gamma" in bad.json()["error"]
    finally:
        code, _, err = server.stop()
    assert code == 0, err[-2000:]

    checked = run_ptcli("plugins", "check", "glow", "--json", env=glow)
    report = json.loads(checked.stdout)
    assert checked.returncode == 0 and report["ok"], checked.stdout
    statuses = {c["check"]: c["status"] for c in report["checks"]}
    for step in ("options", "load", "decode a file", "decode bytes", "decode a video frame", "batch", "/predict", "/v2", "export"):
        assert statuses[f"glow {step}"] == "ok", (step, report)
    options = next(c for c in report["checks"] if c["check"] == "glow options")["options"]
    assert options == [{"name": "gamma", "type": "float", "default": 1.0, "help": options[0]["help"], "request": True,
                        "min": 0.1, "max": 10.0}]
