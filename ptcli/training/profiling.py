"""Profiling a training run (book ch. 7): ``trainer.profile: {wait, warmup, active}`` runs
torch.profiler over that many training steps and writes, into the run folder's ``profile/``,
a TensorBoard trace (``tensorboard --logdir runs``, the PyTorch Profiler tab, or
chrome://tracing) and ``stacks.txt``, call stacks with their CPU time in the folded format
flame-graph tools read (``flamegraph.pl stacks.txt > flame.svg``, or speedscope). On CUDA each
epoch's record also holds the GPU memory: allocated, reserved and the peak, in MB."""

from __future__ import annotations

from pathlib import Path


class Profiling:
    def __init__(self, folder: Path, wait: int, warmup: int, active: int) -> None:
        self.folder = Path(folder)
        self.wait, self.warmup, self.active = wait, warmup, active
        self.profiler = None
        self.steps = 0

    def on_fit_start(self, trainer) -> None:
        from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

        import torch

        self.folder.mkdir(parents=True, exist_ok=True)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        trace = tensorboard_trace_handler(str(self.folder))

        def ready(prof) -> None:
            trace(prof)
            metric = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
            prof.export_stacks(str(self.folder / "stacks.txt"), metric)

        # verbose: without it, torch 2.x records no Python stacks and export_stacks writes nothing
        self.profiler = profile(activities=activities, schedule=schedule(wait=self.wait, warmup=self.warmup, active=self.active, repeat=1),
                                on_trace_ready=ready, with_stack=True, record_shapes=True,
                                experimental_config=torch._C._profiler._ExperimentalConfig(verbose=True), acc_events=True)
        self.profiler.start()

    def on_batch_end(self, trainer, losses) -> None:
        if self.profiler is None:
            return
        self.profiler.step()
        self.steps += 1
        if self.steps >= self.wait + self.warmup + self.active:
            self._stop()

    def _stop(self) -> None:
        if self.profiler is not None:
            profiler, self.profiler = self.profiler, None
            profiler.stop()

    def on_fit_end(self, trainer) -> None:
        self._stop()

    def on_interrupt(self, trainer) -> None:
        self._stop()


class GpuMemory:
    """Each epoch's GPU memory in its record, on CUDA: memory/allocated_mb, reserved_mb, peak_mb."""

    def on_epoch_end(self, trainer, record) -> None:
        import torch

        device = trainer.accelerator.device
        if device.type != "cuda":
            return
        mb = 2 ** 20
        record["memory/allocated_mb"] = round(torch.cuda.memory_allocated(device) / mb, 1)
        record["memory/reserved_mb"] = round(torch.cuda.memory_reserved(device) / mb, 1)
        record["memory/peak_mb"] = round(torch.cuda.max_memory_allocated(device) / mb, 1)
        torch.cuda.reset_peak_memory_stats(device)


def debugging_callbacks(trainer_config, run) -> list:
    """The trainer's debugging callbacks a config asks for: activation statistics, the profiler
    (with a run folder to write to: the main process's) and, always, GPU memory on CUDA."""
    callbacks: list = []
    if trainer_config.log_activations:
        from ptcli.training.activations import ActivationStats

        callbacks.append(ActivationStats(trainer_config.log_activations))
    profile = trainer_config.profile
    if profile is not None and run is not None:
        callbacks.append(Profiling(run.path / "profile", profile.wait, profile.warmup, profile.active))
    callbacks.append(GpuMemory())
    return callbacks
