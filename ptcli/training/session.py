"""From a config file and overrides to a finished (or interrupted) run; shared by `ptcli train`
and `ptcli lr-find`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptcli.training.config import apply_overrides, parse_overrides, read_yaml, to_yaml, validate
from ptcli.errors import Interrupted, PtcliError, UsageError
from ptcli.plugins.recipe import Recipe
from ptcli.training.run import RunDir, default_run_name


@dataclass
class ResolvedConfig:
    recipe: Recipe
    task_class: type
    config: Any  # the recipe's TrainConfig subclass instance
    source: Path
    #: data.root came from the command line (or the resumed run), not the config file.
    root_overridden: bool = False

    def to_yaml(self) -> str:
        return to_yaml(self.config)


def resolve_config(config_file: Path, overrides: list[str]) -> ResolvedConfig:
    """defaults < file < overrides; with resume=RUN_DIR the run's own config.yaml replaces the file."""
    from ptcli.plugins import get_plugins

    parsed = parse_overrides(overrides)
    data = apply_overrides(read_yaml(config_file), parsed)
    source = Path(config_file)
    if data.get("resume"):
        run = RunDir.existing(Path(data["resume"]))
        saved = read_yaml(run.config_path)
        if data.get("recipe") and saved.get("recipe") != data.get("recipe"):
            raise UsageError(f"resume={run.path} is a {saved.get('recipe')} run, but {config_file} is for {data.get('recipe')}")
        data = apply_overrides(saved, [(p, v) for p, v in parsed if p != ["resume"]])
        data["resume"] = str(run.path)
        source = run.config_path
    name = data.get("recipe")
    if not name:
        raise UsageError(f"{config_file} names no recipe: add a line such as `recipe: classify-image`")
    recipe = get_plugins().recipe(str(name))
    task_class = recipe.training_task
    try:
        config = validate(task_class.config_schema, data, source=str(config_file))
    except UsageError as exc:
        # Blame the command line, not the file, when the file alone is valid.
        if not parsed or data.get("resume"):
            raise
        try:
            validate(task_class.config_schema, read_yaml(config_file))
        except UsageError:
            raise exc from None
        message = str(exc).removeprefix(f"{config_file}: ")
        raise UsageError(f"override {' '.join(overrides)}: {message}") from None
    overridden = any(path[:2] == ["data", "root"] for path, _ in parsed) or bool(data.get("resume"))
    return ResolvedConfig(recipe=recipe, task_class=task_class, config=config, source=source, root_overridden=overridden)


def check_data_root(resolved: ResolvedConfig, config_file: Path) -> None:
    """The shipped recipes name a placeholder data.root: when the file's own value is missing,
    say what to do rather than "not found" (a root given on the command line is the recipe's
    to check, with its own words)."""
    if resolved.root_overridden:
        return
    data = getattr(resolved.config, "data", None)
    root = getattr(data, "root", None)
    if root is not None and not Path(root).exists():
        raise UsageError(f"data.root={root} does not exist; point it at your data: "
                         f"`ptcli train {config_file} data.root=PATH`")


def is_main_process() -> bool:
    from ptcli.distributed import is_main_process as main_process

    return main_process()


def train(resolved: ResolvedConfig, config_file: Path, extra_callbacks: tuple | list = ()):
    """Run training; returns a FitResult. Ctrl-C saves a resumable state and raises Interrupted.
    ``extra_callbacks`` run after the core's (so an epoch's checkpoints are written first)."""
    from ptcli.training.callbacks import default_callbacks
    from ptcli.training.trainer import FitResult, Trainer

    from ptcli.training.tracking import tracking_callbacks, tracking_uri

    config = resolved.config
    check_data_root(resolved, config_file)
    uri = tracking_uri(config.run.mlflow)  # a setting that cannot work is a usage error before anything runs
    main = is_main_process()
    if uri is not None and main:
        from ptcli.output import note
        from ptcli.training.tracking import check_reachable

        note(f"MLflow: connecting to {uri}")
        check_reachable(uri)
    run, resume_state, new_run = None, None, False
    if config.resume is not None:
        run = RunDir.existing(config.resume)
        resume_state = run.load_state()
    from ptcli.output import working

    trainer = Trainer(resolved.task_class(config), support=resolved.recipe.devices)
    model = getattr(getattr(config, "model", None), "name", None)
    with working(f"loading {model + ' and ' if model else ''}the data"):
        trainer.prepare(resume_state)  # data, model and setting errors surface before any folder is made
    if main:
        new_run = run is None
        if new_run:
            run = RunDir.create(config.run.dir, resolved.recipe.name, config.run.name or default_run_name(config_file))
            config.run.name = run.path.name
        try:
            run.write_config(to_yaml(config))
            if resume_state is not None:
                run.truncate_metrics(resume_state["position"]["epoch"])
        except KeyboardInterrupt:  # before training started: leave nothing behind
            if new_run:
                import shutil

                shutil.rmtree(run.path, ignore_errors=True)
            raise
    from ptcli.training.profiling import debugging_callbacks

    watch = debugging_callbacks(config.trainer, run)
    trainer.callbacks = [*trainer.task.callbacks(), *watch,
                         *default_callbacks(main, run if main else None, resolved.recipe.name, config.run.tensorboard),
                         *(tracking_callbacks(config, run, resolved.recipe.name) if main else []), *extra_callbacks]
    try:
        trainer.fit()
    except Interrupted as exc:
        where = f"; resume with: ptcli train {config_file} resume={run.path}" if run is not None else ""
        raise Interrupted(f"{exc}{where}") from None
    except PtcliError:
        if new_run and not run.read_metrics():  # failed to start (a tracker that refused): no stray folder
            import shutil

            shutil.rmtree(run.path, ignore_errors=True)
        raise
    trainer.close()
    if run is None:  # a process other than rank 0 of a new run: it wrote nothing
        return FitResult(None, None, None, trainer.last_record)
    existing = lambda which: str(run.checkpoint(which)) if run.checkpoint(which).is_file() else None  # noqa: E731
    records = run.read_metrics()
    return FitResult(
        run_dir=str(run.path),
        best_checkpoint=existing("best"),
        last_checkpoint=existing("last"),
        metrics=trainer.last_record or (records[-1] if records else {}),
        stop_reason=trainer.stop_reason or None,
    )
