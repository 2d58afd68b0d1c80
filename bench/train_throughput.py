"""Training images/s of the ptcli trainer against a bare hand-written loop with the same model,
data, batch size, optimizer and threads (target ratio >= 0.9 on CPU); and `trainer.compile`
(torch.compile, --compile MODE) against the same ptcli run eager, printed as a second ratio.

The ptcli side is the real `ptcli train` machinery in-process (config, Accelerate, progress,
metrics.jsonl, TensorBoard, checkpoints each epoch), timed over the training part of each epoch.
Each side reports its fastest epoch (after a warm-up epoch), over --rounds alternating runs:
on a shared 2-core machine the mean swings by 20% or more from run to run, the best far less.

    python bench/train_throughput.py [--data ../shared/data] [--model cnnnet] [--epochs 6] [--compile default|off]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from report import record, report

TARGET = 0.9
REPO = Path(__file__).resolve().parents[1]


class TrainTimer:
    """Callback: seconds spent in training batches, per epoch."""

    def __init__(self) -> None:
        self.epochs: list[float] = []

    def on_epoch_start(self, trainer) -> None:
        self.start = time.perf_counter()

    def on_validation_start(self, trainer, batches) -> None:
        self.epochs.append(time.perf_counter() - self.start)


def ptcli_rate(config_file: Path, overrides: list[str]) -> tuple[float, int]:
    from ptcli.training.callbacks import default_callbacks
    from ptcli.training.run import RunDir
    from ptcli.training.session import resolve_config
    from ptcli.training.trainer import Trainer

    resolved = resolve_config(config_file, overrides)
    config = resolved.config
    task = resolved.task_class(config)
    trainer = Trainer(task, support=resolved.recipe.devices)
    trainer.prepare()
    run = RunDir.create(config.run.dir, resolved.recipe.name, "bench")
    timer = TrainTimer()
    trainer.callbacks = default_callbacks(True, run, resolved.recipe.name, config.run.tensorboard) + [timer]
    trainer.fit()
    images = len(task.split.train)
    return images / min(timer.epochs[1:]), images


def baseline_rate(config_file: Path, overrides: list[str]) -> float:
    """What one writes by hand: the same model, data and transform, a DataLoader, Adam."""
    import torch
    from torch.utils.data import DataLoader

    from ptcli.training.session import resolve_config

    config = resolve_config(config_file, overrides).config
    from ptcli_classify_image.imagefolder import ImageDataset, scan, transforms
    from ptcli_classify_image.models import build_model, make_registry

    torch.manual_seed(0)
    split = scan(config.data.root)
    size = config.data.image_size
    spec = {"resize": size, "crop": size, "interpolation": "bilinear", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    model = build_model(make_registry().get(config.model.name), len(split.classes), image_size=size)
    loader = DataLoader(ImageDataset(split.train, transforms(spec, "none")), batch_size=config.trainer.batch_size, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.trainer.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for _ in range(config.trainer.epochs):
        model.train()
        start = time.perf_counter()
        for images, labels in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(images), labels)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return len(split.train) / min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--model", default="cnnnet")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compile", default="default", help="trainer.compile mode to compare with eager (off: skip)")
    args = parser.parse_args()
    digits = args.data / "imagefolder_digits"
    if not digits.is_dir():
        sys.exit(f"benchmark data not found: {digits} (see ../shared/data/README.md)")
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as runs:
        overrides = [f"data.root={digits}", f"model.name={args.model}", "data.image_size=64", "data.augment=none",
                     f"trainer.epochs={args.epochs}", f"trainer.batch_size={args.batch_size}", "trainer.optimizer=adam",
                     "trainer.lr=0.0001", "trainer.device=cpu", f"run.dir={runs}"]
        config = REPO / "recipes" / "imagefolder-simplenet.yaml"
        baseline = ours = compiled = 0.0
        for _ in range(args.rounds):
            baseline = max(baseline, baseline_rate(config, overrides))
            rate, images = ptcli_rate(config, overrides)
            ours = max(ours, rate)
            if args.compile != "off":  # its first epoch holds the compilation: the fastest epoch is after it
                compiled = max(compiled, ptcli_rate(config, [*overrides, f"trainer.compile={args.compile}"])[0])
    print(f"model {args.model}, {images} training images of 64x64, batch {args.batch_size}, {args.threads} threads, CPU")
    if compiled:
        print(f"trainer.compile={args.compile}  {compiled:6.1f} images/s, {compiled / ours:.3g}x the eager ptcli run")
        record(f"train images/s, compile={args.compile} / eager", f"{compiled:.1f}", f"{ours:.1f} (eager)", compiled / ours,
               ">= 1.0", compiled >= ours)
    report([("hand-written loop", f"{baseline:6.1f} images/s"), ("ptcli train", f"{ours:6.1f} images/s")], ours / baseline, TARGET,
           figure="train images/s", ours=f"{ours:.1f}", baseline=f"{baseline:.1f} (bare loop)")


if __name__ == "__main__":
    main()
