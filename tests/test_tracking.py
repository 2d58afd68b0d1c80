"""run.mlflow against a real MLflow server (SQLite backend, artifacts served) started here on
127.0.0.1: params, per-epoch metrics, artifacts and tags; a resumed run goes on in the same
MLflow run; a server that dies mid-run costs one warning and nothing else."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import toy_recipes
from conftest import write_yaml

pytest.importorskip("mlflow.server", reason="the tests need the MLflow server (pip install mlflow)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MlflowServer:
    def __init__(self, folder):
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
        self.log = open(folder / "server.log", "w")
        self.process = subprocess.Popen(
            [mlflow, "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination",
             str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            cwd=folder, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(folder / 'server.log').read_text()[-1000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("mlflow server did not start in 90 s")

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


def toy(tmp_path, **run):
    return write_yaml(tmp_path / "toy.yaml", {"recipe": "toy-classify", "trainer": {"epochs": 3, "batch_size": 8, "lr": 0.05},
                                              "run": {"dir": str(tmp_path / "runs"), "tensorboard": False, **run}})


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def mlflow_run(uri, run_dir):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    return client, client.get_run(json.loads((run_dir / "mlflow.json").read_text())["run_id"])


def test_a_run_logs_its_config_metrics_checkpoints_and_tags(cli, tmp_path, mlflow_server):
    result = cli("train", toy(tmp_path, mlflow=mlflow_server.uri, experiment="toys"), "trainer.lr=0.04", "--json", plugins=[toy_recipes])
    assert result.exit_code == 0, result.stderr
    # stdout holds only the summary: MLflow's own "View run ... at" lines go to stderr
    assert len(result.stdout.splitlines()) == 1 and json.loads(result.stdout)["run_dir"]
    assert "View run toy at" in result.stderr and f"MLflow: connecting to {mlflow_server.uri}" in result.stderr
    run_dir = tmp_path / "runs" / "toy-classify" / "toy"
    client, run = mlflow_run(mlflow_server.uri, run_dir)
    assert run.info.status == "FINISHED" and run.info.run_name == "toy"
    assert client.get_experiment(run.info.experiment_id).name == "toys"
    assert run.data.tags["recipe"] == "toy-classify" and run.data.tags["ptcli.run_dir"] == str(run_dir)
    params = run.data.params
    assert params["trainer.lr"] == "0.04" and params["trainer.epochs"] == "3" and params["recipe"] == "toy-classify"
    assert params["run.mlflow"] == mlflow_server.uri and params["trainer.freeze"] == "[]"
    local = records(run_dir)
    for key in ("val/accuracy", "val/loss", "train/loss"):
        history = client.get_metric_history(run.info.run_id, key)
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(r["epoch"], pytest.approx(r[key])) for r in local]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)} | {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert {"config.yaml", "checkpoints/best.safetensors", "checkpoints/best.json", "checkpoints/last.safetensors"} <= artifacts
    downloaded = client.download_artifacts(run.info.run_id, "checkpoints/best.safetensors", str(tmp_path / "down"))
    assert open(downloaded, "rb").read() == (run_dir / "checkpoints" / "best.safetensors").read_bytes()


def test_a_resumed_run_goes_on_in_the_same_mlflow_run(cli, tmp_path, mlflow_server):
    config = toy(tmp_path, mlflow=mlflow_server.uri)
    cut = cli("train", config, "data.interrupt_at=13", plugins=[toy_recipes])  # in epoch 2
    assert cut.exit_code == 130
    run_dir = tmp_path / "runs" / "toy-classify" / "toy"
    client, run = mlflow_run(mlflow_server.uri, run_dir)
    assert run.info.status == "KILLED"
    assert cli("train", config, f"resume={run_dir}", "data.interrupt_at=null", plugins=[toy_recipes]).exit_code == 0
    client, again = mlflow_run(mlflow_server.uri, run_dir)
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val/accuracy")
    assert sorted(m.step for m in history) == [1, 2, 3]


def test_the_server_going_away_mid_run_costs_one_warning(cli, tmp_path, monkeypatch):
    """The server is killed after the first epoch was logged: the run ends normally, one warning
    says so, and the run folder holds every epoch and both checkpoints."""
    server = MlflowServer(tmp_path / "dying")
    try:
        class KillAfterEpoch:
            def on_epoch_end(self, trainer, record):  # task callbacks run before the core's: this is epoch 2's
                if record["epoch"] == 2:
                    server.stop()

        own = toy_recipes.ToyClassify.callbacks
        monkeypatch.setattr(toy_recipes.ToyClassify, "callbacks", lambda self: [*own(self), KillAfterEpoch()])
        started = time.monotonic()
        result = cli("train", toy(tmp_path, mlflow=server.uri), "--json", plugins=[toy_recipes])
        assert result.exit_code == 0, result.stderr
        assert time.monotonic() - started < 60
    finally:
        server.stop()
    warnings = [line for line in result.stderr.splitlines() if "MLflow at" in line]
    assert len(warnings) == 1 and "failed while logging epoch 2" in warnings[0] and "training goes on" in warnings[0]
    run_dir = tmp_path / "runs" / "toy-classify" / "toy"
    assert [r["epoch"] for r in records(run_dir)] == [1, 2, 3]
    assert (run_dir / "checkpoints" / "best.safetensors").is_file() and (run_dir / "checkpoints" / "last.safetensors").is_file()


def test_mlflow_true_takes_the_environment_and_says_when_it_is_not_set(cli, tmp_path, monkeypatch, mlflow_server):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    unset = cli("train", toy(tmp_path, mlflow=True), plugins=[toy_recipes])
    assert unset.exit_code == 2 and "run.mlflow=true takes the server from MLFLOW_TRACKING_URI, which is not set" in unset.stderr
    assert not (tmp_path / "runs").exists()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    assert cli("train", toy(tmp_path, mlflow=True), plugins=[toy_recipes]).exit_code == 0
    _, run = mlflow_run(mlflow_server.uri, tmp_path / "runs" / "toy-classify" / "toy")
    assert run.info.status == "FINISHED"


def test_without_the_client_package_it_says_what_to_install(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow fails, as where it is not installed
    result = cli("train", toy(tmp_path, mlflow="http://127.0.0.1:1"), plugins=[toy_recipes])
    assert result.exit_code == 2 and "pip install 'ptcli[mlflow]'" in result.stderr and not (tmp_path / "runs").exists()


def test_a_server_that_is_not_there_at_the_start_is_one_line_at_once_and_leaves_no_folder(cli, tmp_path):
    port = free_port()
    started = time.monotonic()
    result = cli("train", toy(tmp_path, mlflow=f"http://127.0.0.1:{port}"), plugins=[toy_recipes])
    assert result.exit_code == 1 and time.monotonic() - started < 15
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: run.mlflow=http://127.0.0.1:{port}: nothing answers at 127.0.0.1:{port} (Connection refused); "
                      "start the tracking server, or drop run.mlflow"], result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("uri, message", [
    ("127.0.0.1:5000", "run.mlflow=127.0.0.1:5000 has no scheme; write http://127.0.0.1:5000 for a tracking server"),
    ("localhost:5000/x", "run.mlflow=localhost:5000/x has no scheme; write http://localhost:5000/x"),
    ("htp://127.0.0.1:5000", "run.mlflow=htp://127.0.0.1:5000: MLflow does not know the scheme 'htp'"),
])
def test_a_tracking_uri_without_a_known_scheme_is_a_usage_error_before_anything(cli, tmp_path, uri, message):
    started = time.monotonic()
    result = cli("train", toy(tmp_path, mlflow=uri), plugins=[toy_recipes])
    assert result.exit_code == 2 and message in result.stderr and time.monotonic() - started < 15, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_a_failed_start_after_the_folder_was_made_removes_it(cli, tmp_path, monkeypatch):
    """A server that takes the connection but fails MLflow's calls: the error, and no stray run
    folder (the next run would otherwise be named toy-2)."""
    from ptcli.training import tracking

    monkeypatch.setattr(tracking.MLflowLogger, "_start", lambda self, remembered: (_ for _ in ()).throw(OSError("boom")))
    monkeypatch.setattr(tracking, "check_reachable", lambda uri: None)
    result = cli("train", toy(tmp_path, mlflow="http://127.0.0.1:1"), plugins=[toy_recipes])
    assert result.exit_code == 1 and "the tracking server did not answer (boom)" in result.stderr, result.stderr
    assert not (tmp_path / "runs" / "toy-classify" / "toy").exists()
