"""Activation statistics (book ch. 7): every N optimizer steps, the mean and standard deviation
of each layer's output, through forward hooks, into TensorBoard (``activations/<model>/<layer>/
mean|std`` against the step, the book's plot of dying or exploding layers) and, as the last
values of each epoch, into metrics.jsonl. ``trainer.log_activations: N`` turns it on.

Between recording steps a hook only checks a flag, so the cost stays small (bench/
activation_overhead.py). The hooks are removed when the run ends, however it ends.
"""

from __future__ import annotations


class ActivationStats:
    def __init__(self, every: int) -> None:
        self.every = every
        self.handles: list = []
        self.latest: dict[str, tuple[float, float]] = {}
        self.recorded_step: int | None = None
        self.written_step: int | None = None
        self.trainer = None

    def _armed(self) -> bool:
        return self.trainer.position.step % self.every == 0

    def on_fit_start(self, trainer) -> None:
        self.trainer = trainer
        for model_name, model in trainer.unwrapped_models().items():
            for layer, module in model.named_modules():
                if layer and not any(True for _ in module.children()):  # leaves: the layers themselves
                    self.handles.append(module.register_forward_hook(self._hook(f"{model_name}/{layer}")))

    def _hook(self, name: str):
        def record(module, _inputs, output) -> None:
            import torch

            if not module.training or not isinstance(output, torch.Tensor) or not output.is_floating_point() or not self._armed():
                return
            values = output.detach().float()
            self.latest[name] = (float(values.mean()), float(values.std()) if values.numel() > 1 else 0.0)
            self.recorded_step = self.trainer.position.step

        return record

    def on_batch_end(self, trainer, losses) -> None:
        if self.recorded_step is None or self.recorded_step == self.written_step:
            return
        self.written_step = self.recorded_step
        writer = next((c.writer for c in trainer.callbacks if getattr(c, "writer", None) is not None), None)
        if writer is not None:
            for name, (mean, std) in self.latest.items():
                writer.add_scalar(f"activations/{name}/mean", mean, self.recorded_step)
                writer.add_scalar(f"activations/{name}/std", std, self.recorded_step)

    def on_epoch_end(self, trainer, record) -> None:
        for name, (mean, std) in self.latest.items():
            record[f"activations/{name}/mean"] = round(mean, 6)
            record[f"activations/{name}/std"] = round(std, 6)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def on_fit_end(self, trainer) -> None:
        self.remove()

    def on_interrupt(self, trainer) -> None:
        self.remove()
