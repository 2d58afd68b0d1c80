"""`ptcli train`, `ptcli lr-find` and `ptcli eval`: the core's training commands, for every
recipe that declares a TrainingTask. Heavy imports happen inside the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptcli.cli.options import DeviceOption, JsonOption

ConfigArgument = Annotated[
    Path, typer.Argument(metavar="RECIPE.yaml", help="A training config naming its recipe (see recipes/).", show_default=False)
]
OverridesArgument = Annotated[
    list[str] | None,
    typer.Argument(metavar="KEY=VALUE", help="Dotted overrides, e.g. trainer.epochs=5 model.name=resnet50 "
                   "resume=runs/classify-image/NAME.", show_default=False),
]


def train(
    config_file: ConfigArgument,
    overrides: OverridesArgument = None,
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the resolved config as YAML (JSON with --json) and exit.")] = False,
    engine: Annotated[str, typer.Option(metavar="local|ray", help="Where the training runs: here (or under torchrun), or on a Ray cluster (Ray Train, --replicas DDP processes).")] = "local",
    replicas: Annotated[int | None, typer.Option(min=1, metavar="N", help="--engine ray: DDP processes, one Ray Train worker each (a GPU each with trainer.device=cuda) [default: 2].", show_default=False)] = None,
    address: Annotated[str | None, typer.Option(metavar="HOST:PORT", help="--engine ray: the cluster to join [default: RAY_ADDRESS, else a new local one].", show_default=False)] = None,
    json_output: JsonOption = False,
) -> None:
    """Train a recipe from a YAML config. Writes runs/<recipe>/<name>/ (config.yaml,
    metrics.jsonl, TensorBoard events, checkpoints/best and last). Ctrl-C saves a resumable
    state; continue with resume=RUN_DIR. Runs under torchrun or accelerate launch for DDP, or
    on a Ray cluster with --engine ray."""
    from ptcli.errors import UsageError
    from ptcli.output import emit, emit_json
    from ptcli.training.session import is_main_process, resolve_config
    from ptcli.training.session import train as run_training

    if engine not in ("local", "ray"):
        raise UsageError(f"--engine must be one of local, ray (got {engine!r})")
    if engine == "local" and (replicas is not None or address is not None):
        raise UsageError("--replicas and --address go with --engine ray")
    resolved = resolve_config(config_file, overrides or [])
    if print_config:
        if json_output:
            emit_json(resolved.config.model_dump(mode="json"))
        else:
            emit(resolved.to_yaml().rstrip())
        return
    if engine == "ray":
        from ptcli.training.ray_train import train_on_ray
        from ptcli.training.session import check_data_root

        check_data_root(resolved, config_file)  # the mistakes a worker would make, said here first
        trainer = resolved.config.trainer
        summary = train_on_ray(config_file, overrides or [], replicas=replicas or 2, address=address,
                               gpus=str(trainer.device).startswith("cuda"), run_name=f"ptcli-{resolved.recipe.name}")
        stop_reason = summary.pop("stop_reason", None)
    else:
        result = run_training(resolved, config_file)
        if not is_main_process():
            return
        summary = {"run_dir": result.run_dir, "best_checkpoint": result.best_checkpoint,
                   "last_checkpoint": result.last_checkpoint, "metrics": result.metrics}
        stop_reason = result.stop_reason
    if json_output:
        emit_json(summary)
        return
    if stop_reason:
        emit(stop_reason)
    emit(f"run:  {summary['run_dir']}")
    emit(f"best: {summary['best_checkpoint']}")
    emit(f"last: {summary['last_checkpoint']}")


def lr_find(
    config_file: ConfigArgument,
    overrides: OverridesArgument = None,
    start_lr: Annotated[float, typer.Option(min=0.0, help="First learning rate.")] = 1e-7,
    end_lr: Annotated[float, typer.Option(min=0.0, help="Last learning rate.")] = 10.0,
    iterations: Annotated[int, typer.Option(min=5, help="Batches to try (the data set is cycled).")] = 100,
    plot_path: Annotated[
        Path | None, typer.Option("--plot", metavar="PNG", help="Where to write the plot [default: <run.dir>/<recipe>/<run.name or config name>-lr-find.png].")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """The learning-rate range test (book ch. 4): prints the suggested learning rate and writes
    a plot of loss against learning rate. The model training starts from is left untouched."""
    from ptcli.errors import UsageError
    from ptcli.output import StageLog, emit, emit_json, progress
    from ptcli.training.lr_finder import lr_range_test, plot
    from ptcli.training.run import default_run_name
    from ptcli.training.session import check_data_root, resolve_config
    from ptcli.training.trainer import Trainer

    if not 0 < start_lr < end_lr:
        raise UsageError("--start-lr must be above 0 and below --end-lr")
    resolved = resolve_config(config_file, overrides or [])
    check_data_root(resolved, config_file)
    config = resolved.config
    config.trainer.scheduler.name = "none"  # the test sets the rate itself
    config.trainer.grad_accum = 1
    log = StageLog("lr-find", iterations)
    log.stage("preparing the model and data")
    trainer = Trainer(resolved.task_class(config), support=resolved.recipe.devices)
    trainer.prepare()
    log.stage(f"range test: {iterations} batches, lr {start_lr:.1e} to {end_lr:.1e}")
    with progress() as bar:
        task = bar.add_task("lr range test", total=iterations)

        def step(lr, loss):
            bar.update(task, advance=1, description=f"lr {lr:.1e}  loss {loss:.4f}")
            log.step(f"lr {lr:.1e}  loss {loss:.4f}")

        result = lr_range_test(trainer, start_lr=start_lr, end_lr=end_lr, num_iter=iterations, on_step=step)
    log.stage("writing the plot")
    if plot_path is None:
        name = config.run.name or default_run_name(config_file)
        plot_path = Path(config.run.dir) / resolved.recipe.name / f"{name}-lr-find.png"
    plot(result, plot_path)
    if json_output:
        emit_json({"suggested_lr": result.suggestion, "plot": str(plot_path), "lrs": result.lrs, "losses": result.losses})
        return
    shown = f"{result.suggestion:.2e}" if result.suggestion is not None else "none (too few points; try more --iterations)"
    emit(f"suggested lr: {shown}")
    emit(f"plot: {plot_path}")


def evaluate(
    checkpoint: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="A ptcli checkpoint (.safetensors with its .json sidecar), or tracks in MOTChallenge text (.txt, as `detect --track --mot` writes).", show_default=False)],
    data: Annotated[Path, typer.Argument(metavar="DATA", help="Labelled data in the recipe's training layout; for tracks, the MOTChallenge ground truth (gt.txt, or a sequence folder holding gt/gt.txt).", show_default=False)],
    batch_size: Annotated[int, typer.Option(min=1, metavar="N", help="Inputs per forward pass.")] = 32,
    device: DeviceOption = "auto",
    plots: Annotated[Path | None, typer.Option(metavar="DIR", show_default=False, help=(
        "Also draw the report into DIR (created if needed): a classifier's confusion_matrix.png, a detector's "
        "pr_curve.png and predictions.png (validation images with their boxes); --json then "
        "holds what was drawn under \"plots\"."))] = None,
    json_output: JsonOption = False,
) -> None:
    """Score a trained checkpoint on labelled data: for classifiers accuracy, top-5,
    per-class precision and recall and the confusion matrix; for detectors COCO mAP. Tracks
    (a .txt file) are scored against ground truth: MOTA, IDF1, HOTA and their parts."""
    from ptcli.models.sidecars import read_sidecar
    from ptcli.devices import resolve_device
    from ptcli.output import emit, emit_json
    from ptcli.plugins import get_plugins
    from ptcli.training.scoring import score

    if checkpoint.suffix.lower() == ".txt":
        from ptcli.video.mot import evaluate_mot, format_mot_report, ground_truth_file

        report = evaluate_mot(checkpoint, ground_truth_file(data))
        emit_json(report) if json_output else emit(format_mot_report(report))
        return
    if plots is not None:
        from ptcli.inference.inputs import output_folder

        output_folder(plots, "the pictures", flag="--plots")
    meta = read_sidecar(checkpoint)
    recipe = get_plugins().recipe(meta.get("recipe") or "?")
    report, describe = score(recipe, Path(checkpoint), Path(data), device=resolve_device(device, recipe.devices.devices),
                             batch_size=batch_size, pictures=plots is not None)
    drawn = None
    if plots is not None:
        from ptcli.training.pictures import report_pictures

        plots.mkdir(parents=True, exist_ok=True)
        drawn = report_pictures(report, plots)
        if not drawn:
            from ptcli.output import warn

            warn(f"--plots: a {recipe.name} report has nothing to draw yet (classifiers' confusion matrices, "
                 "detectors' precision-recall curves and predictions are drawn)")
    if json_output:
        emit_json(report if drawn is None else {**report, "plots": drawn})
    else:
        emit(describe(report))
        for data_drawn in (drawn or {}).values():
            emit(f"plot: {data_drawn['file']}")
    if report.get("failed"):  # as the classify commands: the report stands, the exit code says
        raise typer.Exit(1)
