"""What happens around the loop, one callback per job.

Events, in order: fit_start, then per epoch: epoch_start, batch_end (per batch, with the
batch's losses as tensors: call float() only when a number is needed, as each call waits for
the GPU), validation_start, validation_batch_end, epoch_end (with the epoch's record);
finally fit_end. interrupt fires instead of the epoch's end when Ctrl-C stopped training.
A callback implements ``on_<event>(trainer, ...)`` for the events it cares about. Callbacks
that write files run on the main process only (see ``default_callbacks``).
"""

from __future__ import annotations

import time

from ptcli.models.checkpoints import save_checkpoint
from ptcli.output import progress


class MonitorBest:
    """Tracks the best value of the task's monitored metric (every process, so that early
    stopping agrees everywhere). A tie (common for accuracy on a small validation set) goes to
    the epoch with the lower val/loss, so that the best checkpoint is not simply the first
    epoch that reached the value."""

    def on_epoch_end(self, trainer, record) -> None:
        value = trainer.monitored(record)
        loss = record.get("val/loss")
        pos = trainer.position
        better = pos.best is None or (
            value > pos.best + trainer.cfg.early_stopping.min_delta
            if trainer.task.monitor_mode == "max"
            else value < pos.best - trainer.cfg.early_stopping.min_delta
        )
        tie_won = (not better and value == pos.best and loss is not None and pos.best_loss is not None
                   and loss < pos.best_loss)
        trainer.improved = better or tie_won
        if better or tie_won:
            pos.best, pos.best_epoch, pos.best_loss = value, pos.epoch, loss
        if better:
            pos.bad_epochs = 0
        else:
            pos.bad_epochs += 1


class EarlyStopping:
    def on_epoch_end(self, trainer, record) -> None:
        patience = trainer.cfg.early_stopping.patience
        if patience is not None and trainer.position.bad_epochs >= patience:
            trainer.should_stop = True
            trainer.stop_reason = (f"early stop: {trainer.task.monitor} has not improved for {patience} epochs "
                                   f"(best {trainer.position.best:.4f} at epoch {trainer.position.best_epoch})")


class Checkpoints:
    """last (every epoch) and best (when the monitored metric improves), each a self-describing
    safetensors + JSON export, plus the full training state for resuming."""

    def __init__(self, run, recipe: str) -> None:
        self.run = run
        self.recipe = recipe

    def _export(self, trainer, which: str, record: dict) -> None:
        export = trainer.task.export(trainer.unwrapped_models())
        save_checkpoint(
            self.run.checkpoint(which),
            export.state_dict,
            recipe=self.recipe,
            model=export.model,
            classes=export.classes,
            preprocessing=export.preprocessing,
            extra={"model_args": dict(export.model_args), "training": {**record, "run_dir": str(self.run.path)},
                   **dict(export.extra)},
        )

    def on_epoch_end(self, trainer, record) -> None:
        self.run.save_state(trainer.training_state())
        self._export(trainer, "last", record)
        if trainer.improved:
            self._export(trainer, "best", record)

    def on_interrupt(self, trainer) -> None:
        self.run.save_state(trainer.training_state())


class MetricsFile:
    def __init__(self, run) -> None:
        self.run = run
        self.started = time.monotonic()

    def on_epoch_end(self, trainer, record) -> None:
        self.run.append_metrics({**record, "time_s": round(time.monotonic() - self.started, 2)})


class TensorBoard:
    """Scalars against the global optimizer step (book ch. 7): training losses every
    trainer.log_every steps, epoch records at each epoch's end; and the task's sample images."""

    def __init__(self, run) -> None:
        self.run = run
        self.writer = None
        self.last_logged = -1

    def on_fit_start(self, trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a resumed run is about to write again.
        self.writer = SummaryWriter(str(self.run.path), purge_step=trainer.position.step or None)

    def on_batch_end(self, trainer, losses) -> None:
        step = trainer.position.step
        if step != self.last_logged and step % trainer.cfg.log_every == 0:
            self.last_logged = step
            for name, value in losses.items():
                self.writer.add_scalar(f"train_step/{name}", float(value), step)

    def on_epoch_end(self, trainer, record) -> None:
        for key, value in record.items():
            if ("/" in key or key.startswith("lr")) and not key.startswith("activations/"):  # those are logged per step
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, trainer.position.step)
        for name, image in trainer.task.sample_images(trainer.unwrapped_models()).items():
            self.writer.add_image(f"samples/{name}", image.detach().float().clamp(0, 1).cpu(), trainer.position.step)
        self.writer.flush()

    def on_fit_end(self, trainer) -> None:
        self.close()

    def on_interrupt(self, trainer) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def format_record(record: dict, epochs: int) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}"]
    for key, value in record.items():
        # activation statistics (trainer.log_activations) are for TensorBoard and metrics.jsonl:
        # one pair per layer would bury the epoch's line
        if key in ("epoch", "step") or not isinstance(value, (int, float)) or key.startswith("activations/"):
            continue
        parts.append(f"{key} {value:.3g}" if key.startswith("lr") else f"{key} {value:.4f}")
    return "  ".join(parts)


class ProgressDisplay:
    """A live bar per epoch with the epoch's running mean loss on stderr (refreshed at most
    twice a second, since reading a loss waits for the GPU), and one summary line per epoch.
    Where stderr is not a terminal (a log file, CI, `2>&1 | tee`), a plain line every
    PTCLI_PROGRESS_SECONDS instead of the bar (ptcli.output.progress): the epoch's batches,
    rate, time left and running losses."""

    REFRESH_S = 0.5

    def __init__(self) -> None:
        self.bar = None
        self.task = None
        self.shown_at = 0.0
        self.epoch_started = 0.0
        self.first_batch = 0

    def on_fit_start(self, trainer) -> None:
        self.bar = progress(transient=True)
        self.bar.start()

    def on_epoch_start(self, trainer) -> None:
        total = len(trainer.train_loader)
        self.task = self.bar.add_task(f"epoch {trainer.position.epoch + 1}/{trainer.cfg.epochs}", total=total,
                                      completed=trainer.position.batch, line=lambda _task: self._log_line(trainer))
        self.epoch_started = time.monotonic()
        self.first_batch = trainer.position.batch

    def _log_line(self, trainer) -> str:
        pos, total = trainer.position, len(trainer.train_loader)
        done = pos.batch - self.first_batch
        rate = done / max(time.monotonic() - self.epoch_started, 1e-9)
        left = (total - pos.batch) / rate if rate > 0 else float("nan")
        losses = "  ".join(f"{name} {float(value) / max(pos.batch, 1):.4f}" for name, value in list(pos.loss_sums.items()))
        return (f"epoch {pos.epoch + 1}/{trainer.cfg.epochs}: batch {pos.batch}/{total}, "
                f"{rate:.2f} batches/s, about {_duration(left)} left  {losses}").rstrip()

    def on_batch_end(self, trainer, losses) -> None:
        self.bar.advance(self.task)
        if self.bar.disable or time.monotonic() - self.shown_at < self.REFRESH_S:
            return
        self.shown_at = time.monotonic()
        pos = trainer.position
        info = "  ".join(f"{name} {float(total) / pos.batch:.4f}" for name, total in pos.loss_sums.items())
        self.bar.update(self.task, description=f"epoch {pos.epoch + 1}/{trainer.cfg.epochs}  {info}")

    def on_validation_start(self, trainer, batches) -> None:
        self.bar.remove_task(self.task)
        self.task = self.bar.add_task(f"epoch {trainer.position.epoch + 1}/{trainer.cfg.epochs}: validating",
                                      total=batches)

    def on_validation_batch_end(self, trainer) -> None:
        self.bar.advance(self.task)

    def on_epoch_end(self, trainer, record) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None
        self.bar.console.print(format_record(record, trainer.cfg.epochs), highlight=False, soft_wrap=True)

    def on_fit_end(self, trainer) -> None:
        self.bar.stop()

    def on_interrupt(self, trainer) -> None:
        self.bar.stop()


def _duration(seconds: float) -> str:
    if seconds != seconds:  # nan: no rate yet
        return "?"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def default_callbacks(is_main_process: bool, run, recipe: str, tensorboard: bool = True) -> list:
    callbacks: list = [MonitorBest(), EarlyStopping()]
    if not is_main_process:
        return callbacks
    callbacks.append(ProgressDisplay())
    if run is not None:
        # The epoch's record is appended before the state that counts the epoch is saved: a
        # process killed between the two resumes from the previous state, and resuming drops
        # records past it; the other order would lose the record for good.
        from ptcli.training.pictures import Curves, EvaluationPictures

        callbacks += [MetricsFile(run), Checkpoints(run, recipe), Curves(run), EvaluationPictures(run, recipe)]
        if tensorboard:
            callbacks.append(TensorBoard(run))
    return callbacks

