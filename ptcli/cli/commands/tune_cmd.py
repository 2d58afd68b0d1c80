"""`ptcli tune`: hyperparameter search on Optuna (the logic lives in ptcli.training.tuning)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptcli.cli.commands.train_cmd import ConfigArgument, OverridesArgument
from ptcli.cli.options import JsonOption

#: A search stops when this many trials fail one after another (each had its line on stderr).
MAX_FAILURES_IN_A_ROW = 3


def tune(
    config_file: ConfigArgument,
    overrides: OverridesArgument = None,
    params: Annotated[list[str] | None, typer.Option(
        "--param", metavar="KEY=SPEC",
        help="A key to search, repeatable: loguniform(a,b), uniform(a,b), int(a,b) or choice(a,b,...), "
             "e.g. --param trainer.lr=loguniform(1e-4,1e-1) --param trainer.batch_size=choice(16,32).",
        show_default=False)] = None,
    trials: Annotated[int, typer.Option("--trials", min=1, metavar="N", help="Trials the study should hold, done or pruned; "
                                        "a resumed study runs only the missing ones.")] = 20,
    storage: Annotated[str | None, typer.Option("--storage", metavar="URL", help="Keep the study in a database (sqlite:///study.db) "
                                                "to resume it or share it between processes [default: in memory].",
                                                show_default=False)] = None,
    study: Annotated[str | None, typer.Option("--study", metavar="NAME", help="The study's name; it prefixes the trials' "
                                              "run folders [default: <config name>-tune].", show_default=False)] = None,
    jobs: Annotated[int, typer.Option("--jobs", min=1, metavar="J", help="Processes running trials side by side "
                                      "(needs --storage, which they share).")] = 1,
    pruner: Annotated[str, typer.Option("--pruner", metavar="NAME", help="Stop poor trials early on their per-epoch "
                                        "metric: median, hyperband or none.")] = "median",
    seed: Annotated[int | None, typer.Option("--seed", metavar="S", help="Seed of the sampler (TPE), for a reproducible "
                                             "search.", show_default=False)] = None,
    worker: Annotated[bool, typer.Option("--worker", hidden=True)] = False,
    json_output: JsonOption = False,
) -> None:
    """Search hyperparameters of a recipe with Optuna. Each trial is a `ptcli train` run (its own
    run folder, <study>-NNN) with sampled overrides; the recipe's monitored metric and direction
    are the objective, reported every epoch so that --pruner stops poor trials. With --storage the
    study resumes (the same command with a larger --trials runs only the missing trials), and
    several processes or machines sharing the URL cooperate. Ctrl-C marks the running trial
    failed and exits 130. Writes <run.dir>/<recipe>/<study>-best.yaml, the best trial's config,
    which `ptcli train` takes as is. --json: one line per trial, then {"trials", "best_params",
    "best_value", "best_run", "best_config"}."""
    import subprocess
    import sys

    from ptcli.errors import Interrupted, PtcliError, UsageError
    from ptcli.output import emit, emit_json
    from ptcli.training import tuning
    from ptcli.training.session import resolve_config

    if jobs > 1 and storage is None:
        raise UsageError("--jobs shares one study between processes: give it a --storage URL (e.g. sqlite:///study.db)")
    tuning.make_pruner(pruner)
    search = tuning.prepare(config_file, overrides or [], params or [], study)
    opened = tuning.open_study(search, storage, pruner, seed)
    started: list[int] = []
    helpers = []
    if jobs > 1 and not worker:
        argv = [a for a in sys.argv[1:] if a != "--json"]
        # A later option wins: each helper runs one process's share, with its own sampler seed
        # (the same seed would draw the same first trials in every process).
        helpers = [subprocess.Popen([sys.executable, "-m", "ptcli", *argv, "--jobs", "1", "--worker",
                                     *(["--seed", str(seed + i)] if seed is not None else [])],
                                    stdout=subprocess.DEVNULL) for i in range(1, jobs)]

    def log(text: str) -> None:
        sys.stderr.write(f"tune: {text}\n")
        sys.stderr.flush()

    def announce(number: int, values: dict) -> None:
        started.append(number)
        shown = " ".join(tuning.override(k, v) for k, v in values.items())
        log(f"trial {number} ({tuning.finished(opened)} of {trials} done): {shown}")

    run_trial = tuning.objective(search, announce)
    failures = 0
    try:
        from optuna.trial import TrialState

        while True:
            running = len(opened.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            if tuning.finished(opened) + running >= trials:
                break
            before = len(started)
            try:
                opened.optimize(run_trial, n_trials=1)
            except PtcliError:  # the data, the config, Ctrl-C: every trial would meet it
                raise
            except Exception:  # noqa: BLE001 - this trial's own failure (a diverging rate, out of memory)
                pass
            if len(started) == before:
                continue
            last = opened.trials[started[-1]]
            line = {"trial": last.number, "state": last.state.name.lower(), "params": last.params, "value": last.value,
                    "run": last.user_attrs.get("run")}
            if last.state == TrialState.FAIL:
                failures += 1
                line["error"] = last.user_attrs.get("error", "unknown")
                log(f"trial {last.number} failed: {line['error']}")
            elif last.state == TrialState.PRUNED:
                failures = 0
                log(f"trial {last.number} pruned after epoch {last.last_step} ({search.monitor} "
                    f"{last.intermediate_values.get(last.last_step, float('nan')):.4f})")
            else:
                failures = 0
                log(f"trial {last.number}: {search.monitor} {last.value:.4f} (best {opened.best_value:.4f}, trial {opened.best_trial.number})")
            if json_output and not worker:
                emit_json(line)
            if failures >= MAX_FAILURES_IN_A_ROW:
                raise PtcliError(f"{failures} trials in a row failed (the last: {line['error']}); fix that, then run the same command to go on")
    except (Interrupted, KeyboardInterrupt):
        raise tuning.interrupted(opened, started) from None
    finally:
        for helper in helpers:
            try:
                helper.wait()
            except KeyboardInterrupt:
                helper.wait()
    if worker:
        return
    resolved = resolve_config(config_file, overrides or [])
    best_path = tuning.best_config(opened, search, Path(resolved.config.run.dir) / resolved.recipe.name)
    if best_path is None:
        raise UsageError(f"no trial of study {search.study_name} finished; see the errors above")
    best = opened.best_trial
    summary = {"trials": len(opened.trials), "best_params": best.params, "best_value": best.value,
               "best_run": best.user_attrs.get("run"), "best_config": str(best_path)}
    if json_output:
        emit_json(summary)
        return
    emit(f"best: trial {best.number}, {search.monitor} {best.value:.4f}")
    for key, value in best.params.items():
        emit(f"  {tuning.override(key, value)}")
    emit(f"run:    {summary['best_run']}")
    emit(f"config: {best_path}  (ptcli train {best_path})")

