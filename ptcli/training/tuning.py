"""`ptcli tune`: a hyperparameter search over a recipe on Optuna. Each trial is a normal
`ptcli train` run (its own run folder) with sampled overrides; the recipe's monitored metric is
reported every epoch, so that a pruner can stop a poor trial early. A study kept in a storage
URL resumes, and processes sharing it cooperate: that is Optuna's own mechanism, used as is."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptcli.errors import Interrupted, UsageError

KINDS = ("loguniform", "uniform", "int", "choice")
PRUNERS = ("median", "hyperband", "none")
_SPEC = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*$", re.S)


@dataclass(frozen=True)
class Param:
    """One searched key: ``key=kind(args)``."""

    key: str
    kind: str
    args: tuple

    def suggest(self, trial) -> Any:
        if self.kind == "loguniform":
            return trial.suggest_float(self.key, *self.args, log=True)
        if self.kind == "uniform":
            return trial.suggest_float(self.key, *self.args)
        if self.kind == "int":
            return trial.suggest_int(self.key, *self.args)
        return trial.suggest_categorical(self.key, list(self.args))

    def examples(self) -> tuple:
        """Values a trial may be given, to check against the recipe's schema before any trial
        runs: every choice, or a range's bounds and a value inside it."""
        if self.kind == "choice":
            return self.args
        middle = math.sqrt(self.args[0] * self.args[1]) if self.kind == "loguniform" else sum(self.args) / 2
        return (self.args[0], int(middle) if self.kind == "int" else middle, self.args[1])


def parse_param(text: str) -> Param:
    """``trainer.lr=loguniform(1e-4,1e-1)`` and the like, or a usage error naming the --param."""
    key, sep, spec = text.partition("=")
    key = key.strip()
    match = _SPEC.match(spec)
    if not sep or not key or not all(key.split(".")) or not match:
        raise UsageError(f"--param {text!r} is not KEY=SPEC; SPEC is one of loguniform(a,b), uniform(a,b), "
                         "int(a,b), choice(a,b,...) (for example --param trainer.lr=loguniform(1e-4,1e-1))")
    kind, raw = match.group(1), [part.strip() for part in match.group(2).split(",")]
    if kind not in KINDS:
        raise UsageError(f"--param {text}: {kind!r} is not a distribution; use {', '.join(KINDS)}")
    if not all(raw):
        raise UsageError(f"--param {text}: an empty value between the commas")
    values = [_scalar(part) for part in raw]
    if kind == "choice":
        if len(values) < 2 or any(not isinstance(v, (str, int, float, bool)) and v is not None for v in values):
            raise UsageError(f"--param {text}: choice needs two or more plain values (numbers, words, true/false, null)")
        return Param(key, kind, tuple(values))
    if len(values) != 2:
        raise UsageError(f"--param {text}: {kind} takes two bounds, low and high")
    number = int if kind == "int" else float
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or (number is int and not isinstance(v, int)) for v in values):
        raise UsageError(f"--param {text}: {kind}'s bounds must be {'whole numbers' if number is int else 'numbers'}")
    low, high = number(values[0]), number(values[1])
    if not low < high:
        raise UsageError(f"--param {text}: the low bound must be below the high one")
    if kind == "loguniform" and low <= 0:
        raise UsageError(f"--param {text}: loguniform's bounds must be above 0")
    return Param(key, kind, (low, high))


def _scalar(text: str) -> Any:
    """A value as YAML reads it, except that 1e-4 is a number (YAML 1.1 wants 1.0e-4)."""
    import yaml

    try:
        return float(text) if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", text) else yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def override(key: str, value: Any) -> str:
    """KEY=VALUE as `ptcli train` reads it (JSON is YAML: strings stay strings)."""
    return f"{key}={json.dumps(value)}"


def make_pruner(name: str):
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UsageError(f"--pruner must be one of {', '.join(PRUNERS)} (got {name!r})")


class ReportToTrial:
    """A trainer callback: the monitored metric after every epoch goes to the trial, and a
    trial the pruner gives up on stops after that epoch (its run folder keeps what it did)."""

    def __init__(self, trial, mode: str) -> None:
        self.trial, self.mode = trial, mode
        self.best: float | None = None
        self.pruned_at: int | None = None

    def on_epoch_end(self, trainer, record) -> None:
        value = float(trainer.monitored(record))
        if math.isfinite(value) and (self.best is None or (value > self.best if self.mode == "max" else value < self.best)):
            self.best = value
        epoch = trainer.position.epoch
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch
            trainer.should_stop = True
            trainer.stop_reason = f"pruned after epoch {epoch}"


@dataclass
class Search:
    config_file: Path
    overrides: list[str]
    params: list[Param]
    study_name: str
    monitor: str
    mode: str


def prepare(config_file: Path, overrides: list[str], specs: list[str], study_name: str | None) -> Search:
    """Every mistake (a bad SPEC, a key the recipe lacks, a value of the wrong type) before any
    study is made: one trial's config is resolved with a value from each range."""
    from ptcli.training.session import resolve_config

    if not specs:
        raise UsageError("give at least one --param KEY=SPEC to search (for example --param trainer.lr=loguniform(1e-4,1e-1))")
    params = [parse_param(spec) for spec in specs]
    keys = [p.key for p in params]
    if len(set(keys)) != len(keys):
        raise UsageError(f"--param names {sorted({k for k in keys if keys.count(k) > 1})[0]} twice")
    if any(item.partition("=")[0].strip() == "resume" for item in overrides):
        raise UsageError("tune starts a new run per trial; resume= does not go with it")
    resolved = resolve_config(config_file, overrides)
    for param in params:
        for value in param.examples():
            try:
                resolve_config(config_file, [*overrides, override(param.key, value)])
            except UsageError as exc:
                raise UsageError(f"--param {param.key}: the value {json.dumps(value)} is refused: "
                                 f"{str(exc).split(': ', 1)[-1]}") from None
    task = resolved.task_class(resolved.config)
    name = study_name or f"{Path(config_file).stem}-tune"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise UsageError(f"--study {name!r}: use letters, digits, '.', '_' and '-' (up to 64), as it names run folders")
    return Search(Path(config_file), list(overrides), params, name, task.monitor, task.monitor_mode)


def open_study(search: Search, storage: str | None, pruner: str, seed: int | None):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial has its own line
    direction = "maximize" if search.mode == "max" else "minimize"
    try:
        study = optuna.create_study(study_name=search.study_name, storage=storage, load_if_exists=True, direction=direction,
                                    sampler=optuna.samplers.TPESampler(seed=seed), pruner=make_pruner(pruner))
    except ValueError as exc:  # a study of that name that minimises where this one maximises, ...
        raise UsageError(f"--study {search.study_name}: {exc}") from None
    except ImportError as exc:
        raise UsageError(f"--storage {storage}: {exc}") from None
    except Exception as exc:  # sqlalchemy's errors: a URL it cannot open
        if storage is None:
            raise
        raise UsageError(f"--storage {storage} cannot be opened: {str(exc).splitlines()[0]}") from None
    if study.direction != optuna.study.StudyDirection[direction.upper()]:
        raise UsageError(f"--study {search.study_name} in {storage} {study.direction.name.lower()}s; this recipe's "
                         f"{search.monitor} should {direction.removesuffix('e')}e")
    return study


def finished(study) -> int:
    """Trials that count towards --trials: done or pruned (a failed trial is run again)."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def objective(search: Search, announce):
    """The function Optuna calls per trial: train with the sampled overrides, return the best
    value of the monitored metric (the best checkpoint's)."""
    import os
    import socket

    import optuna

    from ptcli.training.session import resolve_config, train

    def run_trial(trial) -> float:
        values = {p.key: p.suggest(trial) for p in search.params}
        name = f"{search.study_name}-{trial.number:03d}"
        resolved = resolve_config(search.config_file, [*search.overrides, *(override(k, v) for k, v in values.items()),
                                                       f"run.name={name}"])
        announce(trial.number, values)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        reporter = ReportToTrial(trial, search.mode)
        try:
            result = train(resolved, search.config_file, extra_callbacks=[reporter])
        except Exception as exc:
            trial.set_user_attr("error", (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300])
            raise
        trial.set_user_attr("run", result.run_dir)
        if reporter.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned after epoch {reporter.pruned_at}")
        if reporter.best is None:
            raise ValueError(f"{search.monitor} was never a finite number")
        return reporter.best

    return run_trial


def best_config(study, search: Search, out_dir: Path) -> Path | None:
    """The best trial's resolved config, with its run name cleared, as a YAML `ptcli train` takes."""
    import yaml

    try:
        best = study.best_trial
    except ValueError:
        return None
    run = best.user_attrs.get("run")
    if not run or not (Path(run) / "config.yaml").is_file():
        return None
    config = yaml.safe_load((Path(run) / "config.yaml").read_text())
    config.setdefault("run", {})["name"] = None
    config["resume"] = None
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{search.study_name}-best.yaml"
    header = (f"# The best trial ({best.number}) of study {search.study_name}: {search.monitor} {best.value:.6g}.\n"
              f"#   ptcli train {path}\n")
    path.write_text(header + yaml.safe_dump(config, sort_keys=False, default_flow_style=False), encoding="utf-8")
    return path


def fail_running(study, numbers: list[int]) -> None:
    """After Ctrl-C, no trial this process began stays RUNNING in the storage."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.number in numbers:
            try:
                study.tell(trial.number, state=TrialState.FAIL)
            except Exception:  # noqa: BLE001 - another process finished it meanwhile
                pass


def interrupted(study, started: list[int]) -> Interrupted:
    fail_running(study, started)
    where = f"trial {started[-1]}" if started else "the study"
    return Interrupted(f"interrupted in {where} (marked failed; finished trials are kept); "
                       f"run the same command to go on")
