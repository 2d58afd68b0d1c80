import json
import subprocess
import sys

from conftest import REPO, run_ptcli

from ptcli import __version__


def test_help_lists_recipe_commands_without_importing_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from ptcli.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'], prog_name='ptcli')\n"
        "print(result.output)\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'timm', 'PIL', 'transformers', 'numpy') if m in sys.modules)\n"
        "print('HEAVY:', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "classify-image" in out and "Classify images" in out
    assert "Recipes:" in out and "plugins" in out and "weights" in out
    assert "HEAVY: []" in out


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"ptcli {__version__}"


def test_python_dash_m_and_exit_code_for_unknown_command():
    result = run_ptcli("no-such-command")
    assert result.returncode == 2
    assert "No such command" in result.stderr


def test_plugins_json_lists_builtin_recipe(cli):
    result = cli("plugins", "--json")
    assert result.exit_code == 0
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    builtin = plugins["classify-image"]
    assert builtin["status"] == "ok" and builtin["error"] is None
    assert builtin["distribution"] == "ptcli" and builtin["version"] == __version__
    assert builtin["commands"] == ["classify-image"]


def test_plugins_human_output(cli):
    result = cli("plugins")
    assert result.exit_code == 0
    assert "classify-image" in result.stdout and "ok" in result.stdout


def test_env_json(cli, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("PTCLI_OFFLINE")
    result = cli("env", "--json")
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    import torch

    assert info["versions"]["torch"] == torch.__version__.split("+")[0]
    assert info["versions"]["ptcli"] == __version__
    assert info["devices"]["cuda"] == [] or torch.cuda.is_available()
    assert set(info["caches"]) == {"ptcli", "torch_hub", "huggingface"}
    assert info["offline"] is True and "HF_HUB_OFFLINE" in info["offline_reason"]


def test_env_human(cli):
    result = cli("env")
    assert result.exit_code == 0
    assert "torch" in result.stdout and "offline      yes" in result.stdout


def test_readme_quick_start_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [line for block in quick.split("```")[1::2] for line in block.strip().splitlines()[1:] if line.strip()]
    assert len(commands) == 2, commands
    ci = (REPO / ".ci" / "run").read_text()
    for command in commands:
        assert command in ci


def test_option_errors_are_json_with_json(cli):
    result = cli("classify-image", "examples/cat.jpg", "--top-k", "0", "--json")
    assert result.exit_code == 2
    error = json.loads(result.stdout)
    assert error["exit_code"] == 2 and "--top-k" in error["error"]
    plain = cli("classify-image", "examples/cat.jpg", "--top-k", "0")
    assert plain.exit_code == 2 and "--top-k" in plain.stderr and plain.stdout == ""


def test_results_stay_on_stdout_while_a_progress_bar_draws_on_a_terminal(tmp_path):
    """stderr is a terminal (the bar is live), stdout a pipe: every result must reach the pipe."""
    import os
    import pty

    from PIL import Image

    for i in range(3):
        Image.new("RGB", (32, 32), (80 * i, 0, 0)).save(tmp_path / f"{i}.png")
    leader, follower = pty.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "ptcli", "classify-image", str(tmp_path), "--json", "--top-k", "1"],
                                stdout=subprocess.PIPE, stderr=follower, text=True, timeout=300, env=os.environ.copy())
    finally:
        os.close(follower)
        os.close(leader)
    assert result.returncode == 0
    assert [json.loads(line)["input"] for line in result.stdout.splitlines()] == [str(tmp_path / f"{i}.png") for i in range(3)]
