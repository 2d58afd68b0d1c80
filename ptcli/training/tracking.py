"""Experiment tracking beside the run folder: MLflow (`run.mlflow`). The run folder stays the
record (metrics.jsonl, checkpoints); the tracker gets a copy, and a tracker that stops answering
mid-run costs one warning, never the training. The client is mlflow-skinny's (MLflow's own
light client package: the tracking API without the server and its dependencies)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ptcli.errors import UsageError

#: Where a run folder remembers its MLflow run, so that a resumed run goes on logging to it.
MLFLOW_FILE = "mlflow.json"
#: MLflow's client retries a failed request for minutes by default; a run should not wait that
#: long on a tracker that went away. The user's own settings of these win.
CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                   "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def tracking_uri(setting: bool | str | None) -> str | None:
    """run.mlflow: a URI, or true for MLFLOW_TRACKING_URI (MLflow's own convention); a usage
    error when the client is not installed."""
    if setting is None or setting is False:
        return None
    try:
        import mlflow.tracking  # noqa: F401
    except ImportError:
        raise UsageError("run.mlflow needs MLflow's client: pip install 'ptcli[mlflow]' (mlflow-skinny), "
                         "or drop run.mlflow") from None
    if setting is True:
        uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
        if not uri:
            raise UsageError("run.mlflow=true takes the server from MLFLOW_TRACKING_URI, which is not set; "
                             "set it or give the URI: run.mlflow=http://HOST:5000")
        return check_scheme(uri, "MLFLOW_TRACKING_URI")
    return check_scheme(str(setting), "run.mlflow")


#: What MLflow's client takes: a server, a local store, Databricks, or a database (a driver may
#: follow the database, as in postgresql+psycopg2://).
SCHEMES = ("http", "https", "file", "databricks", "databricks-uc", "uc")
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")


def check_scheme(uri: str, where: str) -> str:
    """A URI MLflow can use, or a usage error before any run folder exists (MLflow's own errors
    come after a long wait, in its internal exception names)."""
    import re

    said = f"{where}={uri}" if where == "run.mlflow" else f"{where} ({uri})"
    if uri in ("databricks", "databricks-uc"):
        return uri
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", uri)
    if match is None or re.fullmatch(r"[\w.-]+:\d+(/.*)?", uri):
        if "/" in uri and not re.match(r"[\w.-]+:\d+", uri):
            return uri  # a local folder: MLflow's file store
        raise UsageError(f"{said} has no scheme; write http://{uri} for a tracking server, or file:PATH for a folder")
    scheme = match.group(1).lower()
    if scheme in SCHEMES or scheme.split("+")[0] in DATABASES:
        return uri
    raise UsageError(f"{said}: MLflow does not know the scheme {scheme!r}; use http(s)://HOST:PORT, file:PATH, "
                     "databricks, or a database (sqlite:///FILE, postgresql://...)")


def check_reachable(uri: str) -> None:
    """A tracking server that does not answer a connection is an error before the run folder is
    made (MLflow's client retries for most of a minute before it says so)."""
    import socket
    from urllib.parse import urlsplit

    from ptcli.errors import PtcliError

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UsageError(f"run.mlflow={uri}: the port is not a number") from None
    try:
        socket.create_connection((parts.hostname, port), timeout=5).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise PtcliError(f"run.mlflow={uri}: nothing answers at {parts.hostname}:{port} ({reason}); "
                         "start the tracking server, or drop run.mlflow") from None


def flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """A config as dotted keys, e.g. {"trainer.lr": "0.001"}, for MLflow's params."""
    flat: dict[str, str] = {}
    if isinstance(config, dict):
        for key, value in config.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    text = json.dumps(config) if isinstance(config, (list, tuple)) else str(config)
    flat[prefix.rstrip(".")] = text[:6000]  # MLflow's limit on a param's value
    return flat


def model_tag(config) -> str | None:
    model = getattr(config, "model", None)
    for field in ("name", "pretrained"):
        value = getattr(model, field, None)
        if value:
            return str(value)
    return None


def _to_stderr():
    """MLflow's client prints ("View run ... at ...") on stdout, which belongs to results."""
    import contextlib
    import sys

    return contextlib.redirect_stdout(sys.stderr)


class MLflowLogger:
    """A trainer callback: the resolved config as params, every epoch's record as metrics at
    its epoch, the checkpoints and config.yaml as artifacts at the end, tags recipe and model."""

    def __init__(self, uri: str, run, recipe: str, config, experiment: str | None = None) -> None:
        self.uri, self.run, self.recipe, self.config = uri, run, recipe, config
        self.experiment = experiment or recipe
        self.client, self.run_id, self.broken = None, None, False

    # --- connection ----------------------------------------------------------------------
    def _safely(self, what: str, action) -> None:
        if self.broken or self.client is None:
            return
        try:
            with _to_stderr():
                action()
        except Exception as exc:  # noqa: BLE001 - any failure of the tracker: the run goes on
            from ptcli.output import warn

            self.broken = True
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            warn(f"MLflow at {self.uri} failed while {what} ({reason}); training goes on, "
                 f"and {self.run.path / 'metrics.jsonl'} and the checkpoints keep everything")

    def on_fit_start(self, trainer) -> None:
        for key, value in CLIENT_DEFAULTS.items():
            os.environ.setdefault(key, value)
        from mlflow.tracking import MlflowClient

        from ptcli.errors import PtcliError

        self.client = MlflowClient(tracking_uri=self.uri)
        remembered = self.run.path / MLFLOW_FILE
        try:
            with _to_stderr():
                self._start(remembered)
        except Exception as exc:  # noqa: BLE001 - at the start, a tracker that is not there is the user's to fix
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise PtcliError(f"run.mlflow={self.uri}: the tracking server did not answer ({reason}); "
                             "start it, or drop run.mlflow") from None
        remembered.write_text(json.dumps({"tracking_uri": self.uri, "run_id": self.run_id}) + "\n", encoding="utf-8")

    def _start(self, remembered) -> None:
        """A resumed run goes on in its MLflow run; a new one gets a run with the config as params."""
        if remembered.is_file():  # a resumed run: the same MLflow run goes on
            self.run_id = json.loads(remembered.read_text())["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        found = self.client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found is not None else self.client.create_experiment(self.experiment)
        tags = {"recipe": self.recipe, "ptcli.run_dir": str(self.run.path), "mlflow.runName": self.run.path.name}
        model = model_tag(self.config)
        if model:
            tags["model"] = model
        self.run_id = self.client.create_run(experiment_id, tags=tags, run_name=self.run.path.name).info.run_id
        from mlflow.entities import Param

        params = [Param(key, value) for key, value in flatten(self.config.model_dump(mode="json")).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params a call
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def on_epoch_end(self, trainer, record) -> None:
        import time

        from mlflow.entities import Metric

        now, step = int(time.time() * 1000), int(record.get("epoch", trainer.position.epoch))
        metrics = [Metric(key, float(value), now, step) for key, value in record.items()
                   if key not in ("epoch", "step") and isinstance(value, (int, float))]
        self._safely(f"logging epoch {step}", lambda: self.client.log_batch(self.run_id, metrics=metrics))

    def _artifacts(self) -> None:
        self.client.log_artifact(self.run_id, str(self.run.config_path))
        folder = self.run.path / "checkpoints"
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            if path.suffix in (".safetensors", ".json"):
                self.client.log_artifact(self.run_id, str(path), artifact_path="checkpoints")

    def on_fit_end(self, trainer) -> None:
        self._safely("uploading the checkpoints", self._artifacts)
        self._safely("closing the run", lambda: self.client.set_terminated(self.run_id, status="FINISHED"))

    def on_interrupt(self, trainer) -> None:
        self._safely("closing the run", lambda: self.client.set_terminated(self.run_id, status="KILLED"))


def tracking_callbacks(config, run, recipe: str) -> list:
    """The trackers the run's config asks for (main process only)."""
    uri = tracking_uri(getattr(config.run, "mlflow", None))
    return [MLflowLogger(uri, run, recipe, config, getattr(config.run, "experiment", None))] if uri and run is not None else []
