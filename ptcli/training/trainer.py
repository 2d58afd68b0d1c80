"""The one training loop, on Hugging Face Accelerate, for every recipe.

Read ``fit`` top to bottom: it prepares models, optimizers and data, then runs epochs of
training steps and a validation pass, with the groups trainer.freeze and trainer.unfreeze_at
name frozen at each epoch's start. Everything else (progress, metrics.jsonl, TensorBoard,
checkpoints, best-metric tracking, early stopping) is a callback reacting to a fixed list of
events (see callbacks.py), not a branch in the loop. The recipe's training step calls
``ctx.optimize``, which is where backward, clipping, stepping and scheduling happen.
"""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from ptcli.errors import Interrupted, UsageError
from ptcli.training import optim
from ptcli.training.run import restore_rng
from ptcli.training.task import StepContext, TrainingTask


@dataclass
class Position:
    """Where training is: resumable from exactly here."""

    epoch: int = 0  # 0-based epoch in progress (== completed epochs at an epoch boundary)
    batch: int = 0  # batches of that epoch already trained on
    step: int = 0  # optimizer steps so far (of the first optimizer)
    best: float | None = None
    best_epoch: int | None = None
    #: val/loss at the best epoch: it breaks ties of the monitored metric.
    best_loss: float | None = None
    bad_epochs: int = 0
    #: Running loss sums of the epoch in progress, so a resumed epoch reports its whole mean.
    loss_sums: dict = field(default_factory=dict)


@dataclass
class FitResult:
    run_dir: str | None
    best_checkpoint: str | None
    last_checkpoint: str | None
    metrics: dict = field(default_factory=dict)
    stop_reason: str | None = None


def make_accelerator(task: TrainingTask, devices=("cuda", "mps", "cpu"), precisions=("fp32",)):
    """An Accelerator for trainer.device and trainer.precision (usage errors when impossible)."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs

    from ptcli.devices import resolve_device

    cfg = task.config.trainer
    from ptcli.distributed import world_size

    distributed = world_size() > 1
    if cfg.precision not in precisions:
        raise UsageError(f"trainer.precision={cfg.precision}: this recipe trains in {', '.join(precisions)}")
    device = None if distributed and cfg.device == "auto" else resolve_device(cfg.device, devices, option="trainer.device")
    on_cpu = device is not None and device.type == "cpu" or distributed and cfg.device == "cpu"
    if cfg.precision == "fp16" and (on_cpu or device is not None and device.type != "cuda"):
        raise UsageError("trainer.precision=fp16 needs a CUDA device (loss scaling); use bf16 or fp32 here")
    if device is not None and device.type == "cuda" and device.index is not None:
        import torch

        torch.cuda.set_device(device)
    mixed = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[cfg.precision]
    if not distributed:
        # Accelerate keeps its settings in process-wide singletons and refuses different ones
        # later; a second training in one process (tests, notebooks, lr-find then train) needs
        # a clean slate. Under torchrun the process group must stay, and one run is all there is.
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    return Accelerator(
        cpu=on_cpu,
        mixed_precision=mixed,
        gradient_accumulation_steps=cfg.grad_accum,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
        kwargs_handlers=[DistributedDataParallelKwargs(**task.ddp_options)] if task.ddp_options else None,
    )


def seed_everything(seed: int, deterministic: bool) -> None:
    from accelerate.utils import set_seed

    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    set_seed(seed, deterministic=deterministic)


def _worker_init(worker_id: int) -> None:
    # Ctrl-C belongs to the main process, which stops at a batch boundary and shuts the
    # workers down; a worker dying of SIGINT first would turn that into a crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the main process's handler (ptcli.cli.app) is not theirs


class Trainer:
    def __init__(self, task: TrainingTask, callbacks=(), support=None) -> None:
        self.task = task
        self.cfg = task.config.trainer
        self.callbacks = list(callbacks)
        self.support = support  # the recipe's DeviceSupport (None: any device, fp32 only)
        self.position = Position()
        self.should_stop = False
        self.stop_reason = ""
        self.improved = False  # whether the last epoch bettered the monitored metric
        self.ctx = StepContext(self)
        self.last_record: dict = {}
        self._pending_rng = None
        self._batch_sampler = None

    # --- setup -------------------------------------------------------------------------
    def prepare(self, resume_state: dict | None = None) -> None:
        import torch

        support = self.support
        self.accelerator = make_accelerator(self.task, *((support.devices, support.precisions) if support else ()))
        seed_everything(self.cfg.seed, self.cfg.deterministic)
        task = self.task
        task.device = self.accelerator.device
        task.setup()
        models = task.build_models()
        if self.cfg.grad_checkpointing:
            task.enable_grad_checkpointing(models)
        self.groups = task.param_groups(models)
        optim.check_group_names(self.groups, self.cfg)
        if resume_state is not None:
            self.position = Position(**resume_state["position"])
            for name, model in models.items():
                model.load_state_dict(resume_state["models"][name])
        if self.accelerator.num_processes > 1 and self.cfg.unfreeze_at:
            raise UsageError("trainer.unfreeze_at cannot be used with several processes (DDP syncs only the "
                             "parameters trainable when it starts); train in two runs instead")
        self._apply_freezing()  # before DDP wraps the models: it registers only trainable parameters
        self.optimizers = {name: optim.build_optimizer(groups, self.cfg) for name, groups in self.groups.items()}
        train_set, val_set = task.datasets()
        if len(train_set) == 0:
            raise UsageError("the training set is empty")
        from ptcli.training.seeding import SeededSamples

        self._seeded = SeededSamples(train_set, self.cfg.seed)
        train_loader = self._loader(self._seeded, shuffle=True)
        val_loader = self._loader(val_set, shuffle=False) if val_set is not None and len(val_set) else None
        # DDP refuses a module with nothing to train (an EMA copy, a frozen teacher): such
        # models are only moved to the device. One process wraps everything, as before.
        distributed = self.accelerator.num_processes > 1
        names = [name for name, model in models.items()
                 if not distributed or any(p.requires_grad for p in model.parameters())]
        prepared = self.accelerator.prepare(*(models[name] for name in names), *self.optimizers.values(), train_loader, val_loader)
        placed = dict(zip(names, prepared[: len(names)]))
        self.models = {name: placed[name] if name in placed else model.to(self.accelerator.device)
                       for name, model in models.items()}
        self.optimizers = dict(zip(self.optimizers, prepared[len(names): len(names) + len(self.optimizers)]))
        self._params = {name: [p for group in opt.param_groups for p in group["params"]] for name, opt in self.optimizers.items()}
        self.train_loader, self.val_loader = prepared[-2], prepared[-1]
        self.ctx.models = self.models
        from ptcli.training.averaging import Averages

        # Which models each optimizer trains (those holding its parameters): trainer.ema
        # averages them, each after its optimizer's steps.
        unwrapped = {name: self.unwrap(model) for name, model in self.models.items()}
        self._trains = {}
        for opt_name, params in self._params.items():
            ids = {id(p) for p in params}
            self._trains[opt_name] = [name for name, model in unwrapped.items() if any(id(p) in ids for p in model.parameters())]
        self.averages = Averages(self.cfg.ema, {name: unwrapped[name] for names in self._trains.values() for name in names})
        self._eager: dict = {}
        if self.cfg.compile != "off":
            # Compiled lazily, at the first forward pass: its failure is handled there.
            for name in {name for names in self._trains.values() for name in names}:
                self._eager[name] = self.models[name]
                self.models[name] = torch.compile(self.models[name], mode=self.cfg.compile)
            self.ctx.models = self.models
        self.steps_per_epoch = math.ceil(len(self.train_loader) / self.cfg.grad_accum)
        mode = task.monitor_mode
        self.schedulers = {name: optim.build_scheduler(opt.optimizer, self.cfg, self.steps_per_epoch, mode)
                           for name, opt in self.optimizers.items()}
        metrics = task.metrics()
        if metrics is not None:
            for metric in metrics.values():
                # update_metrics gathers across processes itself; a metric that synced too would
                # count every sample once per process. torchmetrics reads sync_on_compute into
                # _to_sync when the metric is made, so both are set.
                metric.sync_on_compute = False
                metric._to_sync = False
            metrics = metrics.to(self.accelerator.device)
        self.metrics = metrics
        if resume_state is not None:
            self._restore(resume_state)
            self.averages.load_state_dict(resume_state.get("ema"))
        if self.accelerator.device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 matmuls: several times faster on Ampere and later

    def _loader(self, dataset, shuffle: bool):
        import torch
        from torch.utils.data import DataLoader

        # The loader's own generator (re-seeded each epoch) seeds its workers, so that starting
        # an iterator never draws from the global generator, whose state a resumed run restores.
        generator = torch.Generator().manual_seed(self.cfg.seed)
        batches = None
        if shuffle:
            self._train_generator = generator
            batches = self._batch_sampler = self.task.batch_sampler(dataset, self.cfg.batch_size, self.cfg.seed)
        sampling = {"batch_sampler": batches} if batches is not None else {"batch_size": self.cfg.batch_size, "shuffle": shuffle}
        return DataLoader(
            dataset,
            generator=generator,
            **sampling,
            num_workers=self.cfg.workers,
            collate_fn=self.task.collate_fn(),
            worker_init_fn=_worker_init,
            pin_memory=self.accelerator.device.type == "cuda",
        )

    def _restore(self, state: dict) -> None:
        for name, opt in self.optimizers.items():
            opt.optimizer.load_state_dict(state["optimizers"][name])
        for name, scheduler in self.schedulers.items():
            if scheduler is not None and state["schedulers"].get(name) is not None:
                scheduler.load_state_dict(state["schedulers"][name])
        scaler = self.accelerator.scaler
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        self._pending_rng = state["rng"]  # restored as the interrupted epoch resumes

    def _apply_freezing(self) -> None:
        frozen = optim.frozen_at(self.cfg, self.position.epoch)
        optim.set_frozen(self.groups, set(self.cfg.freeze) - frozen, frozen=False)
        optim.set_frozen(self.groups, frozen, frozen=True)

    def training_state(self) -> dict:
        scaler = self.accelerator.scaler
        unwrap = self.unwrap
        position = {**vars(self.position), "loss_sums": {k: float(v) for k, v in self.position.loss_sums.items()}}
        return {
            "position": position,
            "models": {name: unwrap(model).state_dict() for name, model in self.models.items()},
            "optimizers": {name: opt.optimizer.state_dict() for name, opt in self.optimizers.items()},
            "schedulers": {name: s.state_dict() if s is not None else None for name, s in self.schedulers.items()},
            "scaler": scaler.state_dict() if scaler is not None else None,
            "ema": self.averages.state_dict() or None,
        }

    def unwrap(self, model):
        """The network itself, without its DDP or torch.compile wrapper (whose state-dict keys
        would carry ``_orig_mod.``)."""
        return self.accelerator.unwrap_model(model, keep_torch_compile=False)

    def unwrapped_models(self) -> dict:
        """The models as a checkpoint saves them: the averaged weights where trainer.ema is on."""
        return {name: self.unwrap(model) for name, model in self.models.items()} | self.averages.modules()

    # --- the loop ----------------------------------------------------------------------
    def fit(self) -> None:
        """The first Ctrl-C, at any moment from fit_start to fit_end, lets the step, validation
        pass or checkpoint write in progress finish, saves the resumable state and raises
        Interrupted; a second one stops at once (files are written atomically either way)."""
        with self._sigint_stops() as interrupted:
            self.emit("fit_start")
            while self.position.epoch < self.cfg.epochs and not self.should_stop:
                self.ctx.epoch = self.position.epoch
                self._apply_freezing()
                self.emit("epoch_start")
                train_losses = self._train_epoch(interrupted)
                if interrupted():
                    self.emit("interrupt")
                    raise Interrupted(f"interrupted in epoch {self.position.epoch + 1}, after batch {self.position.batch}")
                val_losses = self._validate()
                self.position.epoch += 1
                self.position.batch = 0
                self.position.loss_sums = {}
                self.last_record = self._record(train_losses, val_losses)
                self._step_epoch_schedulers()
                self.emit("epoch_end", self.last_record)
                if interrupted():  # Ctrl-C during validation or the epoch's checkpoints: saved, stop
                    self.emit("interrupt")
                    raise Interrupted(f"interrupted after epoch {self.position.epoch}")
            self.emit("fit_end")
            if interrupted():  # during the last writes: the run is complete, but the user asked to stop
                raise Interrupted(f"interrupted after epoch {self.position.epoch}, the last")

    def close(self) -> None:
        """End a distributed run: every process waits here, then the process group is torn down.
        Left to interpreter exit, gloo's threads sometimes abort the process ("terminate called
        without an active exception") after the run has succeeded."""
        if self.accelerator.num_processes > 1:
            self.accelerator.wait_for_everyone()
            self.accelerator.end_training()

    def _train_epoch(self, interrupted) -> dict[str, float]:
        for model in self.models.values():
            model.train()
        loader = self.train_loader
        loader.set_epoch(self.position.epoch)
        self._seeded.epoch = self.position.epoch
        if self._batch_sampler is not None:
            self._batch_sampler.set_epoch(self.position.epoch)
        if self.position.batch:
            loader = self.accelerator.skip_first_batches(loader, self.position.batch)
        self._train_generator.manual_seed(self.cfg.seed * 10_007 + self.position.epoch)
        if self._pending_rng is not None:
            restore_rng(self._pending_rng)
            self._pending_rng = None
        # Losses are summed where they are (on the GPU, no sync per batch); callbacks that show
        # them convert when they need a number.
        sums = self.position.loss_sums = dict(self.position.loss_sums) if self.position.batch else {}
        for batch in loader:
            with self.accelerator.accumulate(*self.models.values()):
                losses = self._first_step_compiled(batch) if self._eager else self.task.training_step(batch, self.ctx)
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value.detach()
            self.position.batch += 1
            self.emit("batch_end", losses)
            if interrupted():
                break
        return self._mean_over_processes({name: float(total) / max(self.position.batch, 1) for name, total in sums.items()})

    def _first_step_compiled(self, batch) -> dict:
        """The first training step with trainer.compile: if compiling fails (no C++ compiler,
        an operation the compiler does not take), the models go back to eager with one warning
        and the step runs again, eagerly. Later steps run as compiled."""
        from ptcli.errors import one_line
        from ptcli.output import warn

        try:
            losses = self.task.training_step(batch, self.ctx)
        except Exception as exc:  # the compiler's failure, whatever its kind
            for optimizer in self.optimizers.values():
                optimizer.zero_grad(set_to_none=True)
            self.models.update(self._eager)
            self.ctx.models = self.models
            warn(f"trainer.compile={self.cfg.compile}: torch.compile failed ({one_line(exc)[:300]}); training eagerly")
            losses = self.task.training_step(batch, self.ctx)
        self._eager = {}
        return losses

    def optimize(self, loss, name: str | None) -> None:
        if name is None:
            if len(self.optimizers) != 1:
                raise RuntimeError(f"ctx.optimize needs an optimizer name: one of {', '.join(self.optimizers)}")
            name = next(iter(self.optimizers))
        optimizer = self.optimizers[name]
        with self._only_training(name):
            self.accelerator.backward(loss)
        if self.accelerator.sync_gradients and self.cfg.grad_clip:
            self.accelerator.clip_grad_norm_(self._params[name], self.cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if not self.accelerator.sync_gradients:
            return
        for model_name in self._trains.get(name, ()) if self.averages.enabled else ():
            self.averages.update(model_name, self.unwrap(self.models[model_name]))
        scheduler = self.schedulers[name]
        if scheduler is not None and self.cfg.scheduler.name in optim.PER_STEP and not self.accelerator.optimizer_step_was_skipped:
            # One-cycle's last rate is reached at total_steps - 1; a resumed run given more
            # epochs keeps that rate rather than stepping off the end of the cycle.
            if scheduler.last_epoch + 1 < getattr(scheduler, "total_steps", math.inf):
                scheduler.step()
        if name == next(iter(self.optimizers)):
            self.position.step += 1

    @contextmanager
    def _only_training(self, name: str):
        """With several optimizers, a backward pass for one leaves the others' gradients as they
        were (a generator's loss must not write into the discriminator's gradients)."""
        if len(self.optimizers) == 1:
            yield
            return
        others = [p for other, params in self._params.items() if other != name for p in params]
        saved = [p.grad for p in others]
        for p in others:
            p.grad = None  # backward then writes fresh tensors, not into the saved ones
        try:
            yield
        finally:
            for p, grad in zip(others, saved):
                p.grad = grad

    def update_metrics(self, *args) -> None:
        """Tensors (one row per sample) are gathered as tensors. Anything else, such as a list of
        per-image dicts whose box counts differ, is gathered per sample as Python objects (through
        the CPU), so that every process updates its metrics with every sample, once."""
        import torch

        from ptcli.inference.batching import to_device

        if self.metrics is None:
            raise RuntimeError("update_metrics: the task declares no metrics")
        if all(isinstance(arg, torch.Tensor) for arg in args):
            self.metrics.update(*self.accelerator.gather_for_metrics(args))
            return
        samples = list(zip(*(to_device(list(arg), "cpu") for arg in args)))
        gathered = self.accelerator.gather_for_metrics(samples, use_gather_object=True)
        columns = [list(column) for column in zip(*gathered)] if gathered else [[] for _ in args]
        self.metrics.update(*to_device(columns, self.accelerator.device))

    def _validate(self) -> dict[str, float]:
        import torch

        if self.val_loader is None:
            return {}
        for model in self.models.values():
            model.eval()
        if self.metrics is not None:
            self.metrics.reset()
        sums: dict = {}
        count = 0
        self.emit("validation_start", len(self.val_loader))
        with torch.no_grad(), self.averages.in_use(self.ctx):
            for batch in self.val_loader:
                for name, value in self.task.validation_step(batch, self.ctx).items():
                    sums[name] = sums.get(name, 0.0) + value.detach()
                count += 1
                self.emit("validation_batch_end")
        losses = self._mean_over_processes({name: float(total) / max(count, 1) for name, total in sums.items()})
        if self.metrics is not None:
            for name, value in self.metrics.compute().items():
                losses[name] = float(value) if value.numel() == 1 else value.tolist()
        return losses

    def _mean_over_processes(self, losses: dict[str, float]) -> dict[str, float]:
        """Every process must log, and decide on best and early stopping, from the same numbers."""
        import torch

        if self.accelerator.num_processes == 1 or not losses:
            return losses
        names = sorted(losses)
        tensor = torch.tensor([losses[n] for n in names], device=self.accelerator.device)
        return dict(zip(names, self.accelerator.reduce(tensor, "mean").tolist()))

    def _record(self, train: Mapping[str, float], val: Mapping[str, float]) -> dict:
        record = {"epoch": self.position.epoch, "step": self.position.step}
        record.update({f"train/{k}": round(v, 6) for k, v in train.items()})
        record.update({f"val/{k}": (round(v, 6) if isinstance(v, float) else v) for k, v in val.items()})
        groups = [group for opt in self.optimizers.values() for group in opt.param_groups]
        for group in groups:
            record["lr" if len(groups) == 1 else f"lr/{group.get('name', len(record))}"] = group["lr"]
        return record

    def monitored(self, record: Mapping) -> float:
        key = self.task.monitor
        if key not in record:
            raise UsageError(f"the recipe monitors {key}, which this run does not produce "
                             f"(available: {', '.join(k for k in record if '/' in k)})")
        return float(record[key])

    def _step_epoch_schedulers(self) -> None:
        name = self.cfg.scheduler.name
        for scheduler in self.schedulers.values():
            if scheduler is None or name in optim.PER_STEP:
                continue
            if name == "plateau":
                scheduler.step(self.monitored(self.last_record))
            else:
                scheduler.step()

    def emit(self, event: str, *args) -> None:
        for callback in self.callbacks:
            handler = getattr(callback, f"on_{event}", None)
            if handler is not None:
                handler(self, *args)

    @contextmanager
    def _sigint_stops(self):
        """The first Ctrl-C asks the loop to stop at the next batch boundary (where the state is
        consistent and can be saved); a second one interrupts at once."""
        import torch

        requested = {"stop": False}
        previous = None

        def handler(signum, frame):
            requested["stop"] = True
            # The second press raises here, whatever handler was there before (one left by an
            # earlier run in this process would only set its own flag and swallow it).
            signal.signal(signal.SIGINT, signal.default_int_handler)

        handler._ptcli_stop_handler = True

        def interrupted() -> bool:
            stop = requested["stop"]
            if self.accelerator.num_processes > 1:  # every process must stop at the same batch
                flag = torch.tensor([1.0 if stop else 0.0], device=self.accelerator.device)
                stop = bool(self.accelerator.reduce(flag, "sum").item() > 0)
            return stop

        in_main_thread = __import__("threading").current_thread() is __import__("threading").main_thread()
        if in_main_thread:
            previous = signal.signal(signal.SIGINT, handler)
            if getattr(previous, "_ptcli_stop_handler", False):  # a stale one is not worth restoring
                previous = None
        try:
            yield interrupted
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, previous or signal.default_int_handler)
