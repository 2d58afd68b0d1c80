"""`ptcli tune`: Optuna studies over a recipe, in a real SQLite storage; Ctrl-C at many points;
processes sharing one study."""

import json
import os
import signal
import subprocess
import sys

import optuna
import pytest
import toy_recipes
from conftest import REPO, write_yaml
from optuna.trial import TrialState

from ptcli.errors import UsageError
from ptcli.training.tuning import parse_param

SEARCH = ("--param", "trainer.lr=loguniform(1e-5,0.5)", "--param", "trainer.batch_size=choice(8,16)", "--seed", "0")


def toy(tmp_path, epochs=3):
    return write_yaml(tmp_path / "toy.yaml", {"recipe": "toy-classify", "trainer": {"epochs": epochs, "batch_size": 8, "lr": 0.05},
                                              "run": {"dir": str(tmp_path / "runs"), "tensorboard": False}})


def lines(result):
    return [json.loads(line) for line in result.stdout.splitlines()]


def stored(storage, name="toy-tune"):
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


@pytest.mark.parametrize("spec, expected", [
    ("trainer.lr=loguniform(1e-4,1e-1)", ("loguniform", (1e-4, 0.1))),
    ("trainer.lr=uniform(0.01, 0.5)", ("uniform", (0.01, 0.5))),
    ("trainer.epochs=int(2,9)", ("int", (2, 9))),
    ("trainer.optimizer=choice(adam,sgd,adamw)", ("choice", ("adam", "sgd", "adamw"))),
    ("model.dropout=choice(0,0.5,null)", ("choice", (0, 0.5, None))),
])
def test_specs(spec, expected):
    param = parse_param(spec)
    assert (param.kind, param.args) == expected and param.key == spec.partition("=")[0]


@pytest.mark.parametrize("spec, message", [
    ("trainer.lr", "is not KEY=SPEC"), ("trainer.lr=normal(0,1)", "'normal' is not a distribution"),
    ("trainer.lr=loguniform(0,1)", "bounds must be above 0"), ("trainer.lr=uniform(1,0.5)", "low bound must be below"),
    ("trainer.epochs=int(1.5,4)", "whole numbers"), ("trainer.lr=uniform(a,b)", "must be numbers"),
    ("trainer.lr=choice(1)", "two or more"), ("trainer.lr=uniform(1,)", "empty value"), ("=int(1,2)", "is not KEY=SPEC"),
])
def test_spec_mistakes(spec, message):
    with pytest.raises(UsageError, match=message):
        parse_param(spec)


def test_a_study_in_sqlite_resumes_with_only_the_missing_trials_and_its_best_config_trains(cli, tmp_path):
    config, storage = toy(tmp_path), f"sqlite:///{tmp_path / 'study.db'}"
    first = cli("tune", config, *SEARCH, "--trials", "4", "--storage", storage, "--json", plugins=[toy_recipes])
    assert first.exit_code == 0, first.stderr
    *trials, summary = lines(first)
    assert [t["trial"] for t in trials] == [0, 1, 2, 3] and summary["trials"] == 4
    done = [t for t in trials if t["state"] == "complete"]
    best = max(done, key=lambda t: t["value"])
    assert summary["best_value"] == best["value"] and summary["best_params"] == best["params"] == stored(storage)[best["trial"]].params
    for t in trials:  # each trial is a normal run folder, with its sampled settings
        run = tmp_path / "runs" / "toy-classify" / f"toy-tune-{t['trial']:03d}"
        assert t["run"] == str(run) and (run / "checkpoints" / "last.safetensors").is_file()
        saved = (run / "config.yaml").read_text()
        assert f"lr: {t['params']['trainer.lr']}" in saved and f"batch_size: {t['params']['trainer.batch_size']}" in saved
    assert "tune: trial 3 (3 of 4 done): trainer.lr=" in first.stderr

    again = cli("tune", config, *SEARCH, "--trials", "6", "--storage", storage, "--json", plugins=[toy_recipes])
    *more, summary = lines(again)
    assert [t["trial"] for t in more] == [4, 5] and summary["trials"] == 6
    assert len(stored(storage)) == 6
    nothing = cli("tune", config, *SEARCH, "--trials", "6", "--storage", storage, "--json", plugins=[toy_recipes])
    assert len(lines(nothing)) == 1 and len(stored(storage)) == 6

    retrained = cli("train", summary["best_config"], "--json", plugins=[toy_recipes])
    assert retrained.exit_code == 0, retrained.stderr
    rerun = json.loads(retrained.stdout.splitlines()[-1])
    assert rerun["run_dir"] != summary["best_run"]
    assert rerun["metrics"]["val/accuracy"] == pytest.approx(summary["best_value"]) or summary["best_value"] > rerun["metrics"]["val/accuracy"]


def test_the_median_pruner_stops_poor_trials_after_their_warm_up(cli, tmp_path):
    config = toy(tmp_path, epochs=4)
    result = cli("tune", config, "--param", "trainer.lr=choice(0.00001,0.05)", "--seed", "1", "--trials", "8", "--json",
                 plugins=[toy_recipes])
    assert result.exit_code == 0, result.stderr
    *trials, summary = lines(result)
    pruned = [t for t in trials if t["state"] == "pruned"]
    assert pruned and summary["best_params"] == {"trainer.lr": 0.05}
    for t in pruned:
        epochs = [json.loads(line) for line in (tmp_path / "runs" / "toy-classify" / f"toy-tune-{t['trial']:03d}" / "metrics.jsonl").read_text().splitlines()]
        assert 2 <= len(epochs) < 4  # not before the warm-up's 2 epochs, and stopped before the end
        assert t["params"] == {"trainer.lr": 0.00001}
    never = cli("tune", config, "--param", "trainer.lr=choice(0.00001,0.05)", "--seed", "1", "--trials", "8", "--pruner", "none",
                "--study", "unpruned", "--json", plugins=[toy_recipes])
    assert {t["state"] for t in lines(never)[:-1]} == {"complete"}


#: The batch size fixed, so that every trial has as many trainer events.
ONE_SIZE = ("--param", "trainer.lr=loguniform(1e-5,0.5)", "--seed", "0")
#: Events of one 3-epoch toy run (fit_start, then per epoch: epoch_start, 8 batch_end,
#: validation_start, 4 validation_batch_end, epoch_end; fit_end).
EVENTS_PER_RUN = 2 + 3 * (1 + 8 + 1 + 4 + 1)


@pytest.mark.parametrize("at", [1, 5, 16, EVENTS_PER_RUN, EVENTS_PER_RUN + 1, 2 * EVENTS_PER_RUN + 12])
def test_ctrl_c_at_many_points_leaves_a_consistent_study_that_resumes(cli, tmp_path, monkeypatch, at):
    """SIGINT at the at-th trainer event counted across trials: the trial it lands in is marked
    failed (none stays running), finished trials are kept, exit 130; the same command then
    completes the study."""
    config, storage = toy(tmp_path), f"sqlite:///{tmp_path / 'study.db'}"
    signal_at = toy_recipes.SignalAt(at)
    own = toy_recipes.ToyClassify.callbacks
    monkeypatch.setattr(toy_recipes.ToyClassify, "callbacks", lambda self: [*own(self), signal_at])
    cut = cli("tune", config, *ONE_SIZE, "--pruner", "none", "--trials", "4", "--storage", storage, "--json", plugins=[toy_recipes])
    assert signal_at.seen >= at
    assert cut.exit_code == 130, cut.stderr
    interrupted = (at - 1) // EVENTS_PER_RUN
    error = json.loads(cut.stdout.splitlines()[-1])
    assert error["exit_code"] == 130 and f"interrupted in trial {interrupted} (marked failed; finished trials are kept)" in error["error"]
    states = [t.state for t in stored(storage)]
    assert states == [TrialState.COMPLETE] * interrupted + [TrialState.FAIL]
    monkeypatch.setattr(toy_recipes.ToyClassify, "callbacks", own)
    resumed = cli("tune", config, *ONE_SIZE, "--pruner", "none", "--trials", "4", "--storage", storage, "--json", plugins=[toy_recipes])
    assert resumed.exit_code == 0, resumed.stderr
    states = [t.state for t in stored(storage)]
    assert states.count(TrialState.COMPLETE) == 4 and states.count(TrialState.FAIL) == 1 and TrialState.RUNNING not in states
    assert lines(resumed)[-1]["trials"] == 5


def test_ctrl_c_while_a_trial_is_sampled(cli, tmp_path, monkeypatch):
    config, storage = toy(tmp_path), f"sqlite:///{tmp_path / 'study.db'}"
    calls = []
    sample = optuna.samplers.TPESampler.sample_independent

    def interrupted_second_time(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # two parameters a trial: the first of trial 1's
            raise KeyboardInterrupt
        return sample(self, *args, **kwargs)

    monkeypatch.setattr(optuna.samplers.TPESampler, "sample_independent", interrupted_second_time)
    cut = cli("tune", config, *SEARCH, "--trials", "3", "--storage", storage, plugins=[toy_recipes])
    assert cut.exit_code == 130 and "interrupted" in cut.stderr
    assert [t.state for t in stored(storage)] == [TrialState.COMPLETE, TrialState.FAIL]


@pytest.mark.parametrize("args, message", [
    (("--param", "trainer.lr=uniform(0.1,0.2)", "--jobs", "2"), "--jobs shares one study between processes: give it a --storage URL"),
    ((), "give at least one --param KEY=SPEC"),
    (("--param", "trainer.nothing=uniform(0.1,0.2)"), "--param trainer.nothing:"),
    (("--param", "trainer.batch_size=uniform(0.1,0.2)"), "--param trainer.batch_size:"),
    # every choice and both bounds are checked, not one sample of them
    (("--param", "trainer.optimizer=choice(adam,rmsprop)"), '--param trainer.optimizer: the value "rmsprop" is refused'),
    (("--param", "trainer.lr=uniform(-0.1,0.2)"), "--param trainer.lr: the value -0.1 is refused"),
    (("--param", "trainer.lr=uniform(0.1,0.2)", "--param", "trainer.lr=uniform(0.1,0.3)"), "names trainer.lr twice"),
    (("--param", "trainer.lr=uniform(0.1,0.2)", "--pruner", "asha"), "--pruner must be one of median, hyperband, none"),
    (("--param", "trainer.lr=uniform(0.1,0.2)", "--study", "a/b"), "--study 'a/b': use letters"),
    (("--param", "trainer.lr=uniform(0.1,0.2)", "--storage", "nosuchdb://x"), "--storage nosuchdb://x"),
    (("--param", "trainer.lr=uniform(0.1,0.2)", "resume=somewhere"), "resume= does not go with it"),
])
def test_mistakes_are_usage_errors_before_any_trial(cli, tmp_path, args, message):
    result = cli("tune", toy(tmp_path), *args, "--trials", "2", "--json", plugins=[toy_recipes])
    assert result.exit_code == 2, result.stdout + result.stderr
    error = json.loads(result.stdout.splitlines()[-1])["error"]
    assert message in error and "\n" not in error, error
    assert not (tmp_path / "runs").exists()


def test_a_trial_that_fails_is_reported_and_the_search_goes_on_then_stops(cli, tmp_path, monkeypatch):
    calls = []
    step = toy_recipes.ToyClassify.training_step

    def diverging(self, batch, ctx):
        if self.config.trainer.batch_size == 16:
            raise RuntimeError("the loss diverged")
        calls.append(1)
        return step(self, batch, ctx)

    monkeypatch.setattr(toy_recipes.ToyClassify, "training_step", diverging)
    result = cli("tune", toy(tmp_path), "--param", "trainer.batch_size=choice(8,16)", "--seed", "0", "--trials", "3", "--json",
                 plugins=[toy_recipes])
    *trials, summary = lines(result)
    failed = [t for t in trials if t["state"] == "fail"]
    assert failed and all(t["error"] == "the loss diverged" and t["params"] == {"trainer.batch_size": 16} for t in failed)
    assert result.exit_code == 0 and summary["best_params"] == {"trainer.batch_size": 8}
    monkeypatch.setattr(toy_recipes.ToyClassify, "training_step", lambda self, batch, ctx: (_ for _ in ()).throw(RuntimeError("always")))
    stuck = cli("tune", toy(tmp_path), "--param", "trainer.batch_size=choice(8,16)", "--trials", "9", "--study", "stuck", plugins=[toy_recipes])
    assert stuck.exit_code == 1 and "3 trials in a row failed (the last: always)" in stuck.stderr


def test_two_processes_share_a_study(tmp_path, simplenet_config):
    """`--jobs 2`: a second process joins through the SQLite storage; the trials are shared out
    and counted once."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = [sys.executable, "-m", "ptcli", "tune", str(simplenet_config), "--param", "trainer.lr=loguniform(1e-3,1e-1)",
               "--trials", "4", "--jobs", "2", "--storage", storage, "--study", "shared", "--seed", "0", "--json",
               "trainer.device=cpu"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PTCLI_PLUGINS": "classify-image"})
    assert done.returncode == 0, done.stderr[-2000:]
    *trials, summary = lines(done)
    trials_stored = stored(storage, "shared")
    assert {t.state for t in trials_stored} == {TrialState.COMPLETE} and 4 <= len(trials_stored) <= 5
    assert len({t.user_attrs["worker"] for t in trials_stored}) == 2
    rates = [t.params["trainer.lr"] for t in trials_stored]
    assert len(set(rates)) == len(rates)  # each process samples with its own seed
    assert summary["trials"] == len(trials_stored) and len(trials) < len(trials_stored)  # the helper's trials print nowhere


def test_ctrl_c_reaches_a_real_tune_process(tmp_path, simplenet_config):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = [sys.executable, "-m", "ptcli", "tune", str(simplenet_config), "--param", "trainer.lr=loguniform(1e-3,1e-1)",
               "--trials", "50", "--storage", storage, "--study", "cut", "trainer.epochs=30", "trainer.device=cpu"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "PTCLI_PLUGINS": "classify-image"})
    for line in process.stderr:
        if line.startswith("epoch 2/30"):
            process.send_signal(signal.SIGINT)
            break
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 130, rest
    assert "interrupted in trial 0 (marked failed" in rest
    assert [t.state for t in stored(storage, "cut")] == [TrialState.FAIL]
