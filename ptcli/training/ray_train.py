"""`ptcli train --engine ray`: the one trainer under Ray Train's TorchTrainer. Each of
``--replicas`` Ray Train workers runs ptcli's own training (ptcli.training.session.train) as a
DDP process: Ray Train makes the process group and sets the environment (RANK, WORLD_SIZE,
MASTER_ADDR...) that torchrun would, and the trainer takes it as it takes torchrun's. The run
folder (config, metrics, checkpoints, the resumable state) is the trainer's, written by rank 0:
on a cluster of several machines run.dir must be a folder every node sees (a shared file
system), and `resume=RUN_DIR` resumes exactly as it does locally.
"""

from __future__ import annotations

import os
from pathlib import Path

from ptcli.errors import PtcliError


def _worker(config: dict) -> None:
    """One Ray Train worker: the command's config, resolved again here, trained as one process
    of the DDP group; rank 0 sends the run's summary back."""
    from ptcli.training.session import is_main_process, resolve_config, train

    if Path(config["cwd"]).is_dir():  # relative paths in the config mean what they meant to the command
        os.chdir(config["cwd"])
    config_file = Path(config["file"])
    result = train(resolve_config(config_file, config["overrides"]), config_file)
    if is_main_process():
        config["summary"].put({"run_dir": result.run_dir, "best_checkpoint": result.best_checkpoint,
                               "last_checkpoint": result.last_checkpoint, "metrics": result.metrics,
                               "stop_reason": result.stop_reason})


def train_on_ray(config_file: Path, overrides: list[str], *, replicas: int, address: str | None, gpus: bool,
                 run_name: str) -> dict:
    """The run's summary (run_dir, best and last checkpoints, metrics) once the workers finish."""
    from ptcli.inference.ray_engine import connect

    connect(address)
    import ray.train
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue

    summary = Queue(actor_options={"num_cpus": 0})
    storage = Path(os.environ.get("PTCLI_RAY_STORAGE", Path.home() / "ray_results")).absolute()
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"file": str(Path(config_file).absolute()), "overrides": list(overrides), "cwd": os.getcwd(),
                           "summary": summary},
        scaling_config=ScalingConfig(num_workers=replicas, use_gpu=gpus, resources_per_worker={"CPU": 1}),
        # Ray Train's own folder holds its bookkeeping only: ptcli's checkpoints live in the run folder.
        run_config=RunConfig(name=run_name, storage_path=str(storage)),
    )
    try:
        trainer.fit()
    except ray.train.TrainingFailedError as exc:
        raise PtcliError(f"training on the Ray cluster failed: {_first_error(exc)}") from None
    try:
        return summary.get(timeout=30)
    finally:
        summary.shutdown()


def _first_error(exc: BaseException) -> str:
    """What went wrong in the first worker that failed, in one line."""
    from ptcli.errors import flatten

    errors = getattr(exc, "worker_failures", None) or {}
    cause = next(iter(errors.values()), None) if isinstance(errors, dict) else None
    cause = getattr(cause, "cause", None) or cause or exc.__cause__ or exc
    return flatten(cause, 300)
