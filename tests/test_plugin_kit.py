"""`ptcli plugins check` and `ptcli plugins new`: a plugin author's contract checks and template."""

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO, run_ptcli


def _install(source, target):
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps", "--no-index",
                           "--target", str(target), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _env(site):
    import os

    return {"PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}


@pytest.mark.slow
def test_a_built_in_plugin_passes_its_checks():
    result = run_ptcli("plugins", "check", "classify-image", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    statuses = {c["check"]: c["status"] for c in report["checks"]}
    assert report["ok"] and statuses == {"loads": "ok", "imports without torch": "ok", "classify-image --help": "ok",
                                         "classify-image config defaults": "ok", "classify-image example": "ok",
                                         "classify-image predictor": "ok", "classify-image options": "ok",
                                         "classify-image load": "ok", "classify-image decode a file": "ok",
                                         "classify-image decode bytes": "ok", "classify-image decode a video frame": "ok",
                                         "classify-image batch": "ok", "classify-image /predict": "ok",
                                         "classify-image /v2": "ok", "classify-image export": "ok"}


BROKEN = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "ptcli-sloppy"
        version = "0.1.0"
        [project.entry-points.ptcli]
        sloppy = "ptcli_sloppy"
        [tool.setuptools]
        packages = ["ptcli_sloppy"]
    """,
    "ptcli_sloppy/__init__.py": """
        import torch  # at import time: what the check catches
        from ptcli import hookimpl
        from ptcli.plugins.recipe import Command, Recipe

        RECIPE = Recipe(name="sloppy", help="x", training="ptcli_sloppy.training:Task",
                        commands=(Command(name="sloppy", help="x", target="ptcli_sloppy.command:run", example=("{image}",)),))

        @hookimpl
        def register_recipes(register):
            register(RECIPE)
    """,
    "ptcli_sloppy/command.py": """
        def run(path: str) -> None:
            raise RuntimeError("the example breaks")
    """,
    "ptcli_sloppy/training.py": """
        from pydantic import Field
        from ptcli.training.schema import Section, TrainConfig
        from ptcli.training.task import TrainingTask

        class Model(Section):
            width: int = Field(0, ge=1)  # a default its own schema rejects

        class Config(TrainConfig):
            model: Model = Field(default_factory=lambda: Model.model_construct(width=0))

        class Task(TrainingTask):
            config_schema = Config
    """,
}


@pytest.mark.slow
def test_a_plugin_that_breaks_the_contract_fails_its_checks(tmp_path):
    source = tmp_path / "sloppy"
    for name, text in BROKEN.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(textwrap.dedent(text))
    _install(source, tmp_path / "site")
    result = run_ptcli("plugins", "check", "sloppy", "--json", env=_env(tmp_path / "site"))
    assert result.returncode == 1, result.stdout + result.stderr
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["imports without torch"]["status"] == "failed" and "torch" in checks["imports without torch"]["detail"]
    assert checks["sloppy --help"]["status"] == "ok"
    assert checks["sloppy config defaults"]["status"] == "failed" and "model.width" in checks["sloppy config defaults"]["detail"]
    assert checks["sloppy example"]["status"] == "failed" and "the example breaks" in checks["sloppy example"]["detail"]
    human = run_ptcli("plugins", "check", "sloppy", env=_env(tmp_path / "site"))
    assert human.returncode == 1 and "3 checks failed" in human.stdout


class _Half:
    """Predictors that break the contract, for the check."""


def test_the_predictor_check_names_what_breaks_the_contract():
    from ptcli.inference.contract import Predictor
    from ptcli.plugins.check import _check_predictor
    from ptcli.plugins.recipe import Recipe

    class NoForward(Predictor):
        @classmethod
        def load(cls, source, device):
            return cls()

        def decode(self, item):
            return item

    class OddKind(NoForward):
        kind = "video"

        def forward(self, batch):
            return batch

        def postprocess(self, row, meta):
            return {}

    cases = [(_Half, "failed", "is not a ptcli.inference.contract.Predictor subclass"),
             (NoForward, "failed", "NoForward does not write forward, postprocess"),
             (OddKind, "failed", "OddKind.kind is 'video'"),
             ("nowhere.at_all:Thing", "failed", "cannot load nowhere.at_all:Thing"),
             ("ptcli_classify_image.predictor:ImageClassifier", "ok", "ImageClassifier (image inputs)")]
    for predictor, status, detail in cases:
        check = _check_predictor(Recipe(name="r", help="", predictor=predictor))
        assert check["check"] == "r predictor" and check["status"] == status and detail in check["detail"], check


def test_checking_a_plugin_that_is_not_installed(cli):
    result = cli("plugins", "check", "nothing")
    assert result.exit_code == 2 and "no installed plugin 'nothing'" in result.stderr


@pytest.mark.slow
def test_a_new_plugin_from_the_template_installs_and_passes_its_own_tests_and_checks(cli, tmp_path):
    result = cli("plugins", "new", "glow", "-o", tmp_path)
    assert result.exit_code == 0, result.stderr
    folder = tmp_path / "ptcli-glow"
    # The hint installs into ptcli's own Python, not whichever pip is first on PATH.
    assert result.stdout.strip() == f"{folder}: {sys.executable} -m pip install -e {folder} && {sys.executable} -m pytest {folder / 'tests'}"
    as_json = json.loads(cli("plugins", "new", "gleam", "-o", tmp_path, "--json").stdout)
    assert as_json == {"folder": str(tmp_path / "ptcli-gleam"), "install": f"{sys.executable} -m pip install -e {tmp_path / 'ptcli-gleam'}",
                       "test": f"{sys.executable} -m pytest {tmp_path / 'ptcli-gleam' / 'tests'}"}
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == {
        "pyproject.toml", "ptcli_glow/__init__.py", "ptcli_glow/model.py", "ptcli_glow/predictor.py", "ptcli_glow/training.py",
        "recipes/glow.yaml", "tests/conftest.py", "tests/test_ptcli_glow.py"}
    _install(folder, tmp_path / "site")
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder / "tests")],
                           capture_output=True, text=True, cwd=folder, env={**__import__("os").environ, **_env(tmp_path / "site")},
                           timeout=300)
    assert tests.returncode == 0 and "4 passed" in tests.stdout, tests.stdout + tests.stderr
    check = run_ptcli("plugins", "check", "glow", env=_env(tmp_path / "site"))
    assert check.returncode == 0 and "all checks passed" in check.stdout, check.stdout + check.stderr
    again = cli("plugins", "new", "glow", "-o", tmp_path)
    assert again.exit_code == 2 and "exists" in again.stderr
    for bad in ("Glow", "train", "9lives"):
        assert cli("plugins", "new", bad, "-o", tmp_path).exit_code == 2


def test_the_checks_tiny_inputs_need_no_pytest(tmp_path):
    """pytest is a development dependency: `ptcli plugins check` must work without it."""
    code = ("import sys; sys.modules['pytest'] = None; from pathlib import Path; "
            "from ptcli.plugins.check import _tiny_inputs; print(sorted(_tiny_inputs(Path(sys.argv[1]))))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(["clip", "coco", "image", "text", "tmp"])
