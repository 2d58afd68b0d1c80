"""The book's debugging tools in the trainer (ch. 7): activation statistics through hooks."""

import json

import pytest

from conftest import train_json


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_activation_statistics_go_to_metrics_and_tensorboard_and_the_hooks_go_away(cli, simplenet_config, monkeypatch, tmp_path):
    from ptcli.training import activations

    seen = []
    remove = activations.ActivationStats.remove

    def remembering(self):
        seen.append([h for h in self.handles])
        remove(self)

    monkeypatch.setattr(activations.ActivationStats, "remove", remembering)
    summary = train_json(cli, simplenet_config, "trainer.log_activations=2", "run.tensorboard=true")
    records = _records(tmp_path / "runs" / "classify-image" / "tiny")
    layers = {key.rsplit("/", 1)[0] for key in records[-1] if key.startswith("activations/")}
    assert layers == {"activations/model/fc1", "activations/model/fc2", "activations/model/fc3"}
    assert all(records[-1][f"{layer}/std"] >= 0 for layer in layers)
    # every hook was removed at the end: none is left on the checkpoint's model
    assert len(seen) == 1 and len(seen[0]) == 3
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "runs" / "classify-image" / "tiny"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "activations/model/fc1/mean" in tags
    steps = [event.step for event in events.Scalars("activations/model/fc1/mean")]
    assert steps and all(step % 2 == 0 for step in steps)
    assert "activations" not in cli("train", simplenet_config, "trainer.log_activations=2", "run.name=again").stdout
    assert summary["metrics"]["epoch"] == 2


def test_hooks_are_removed_after_an_interrupted_run_too(cli, tmp_path):
    import toy_recipes
    from conftest import write_yaml

    from ptcli.training import activations

    made = []
    original = activations.ActivationStats.on_fit_start

    def tracking(self, trainer):
        original(self, trainer)
        made.append((self, [m for m in trainer.unwrapped_models()["model"].modules()]))

    config = write_yaml(tmp_path / "toy.yaml", {"recipe": "toy-classify", "data": {"samples": 16, "interrupt_at": 1},
                                                "trainer": {"epochs": 2, "batch_size": 8, "device": "cpu", "log_activations": 1},
                                                "run": {"dir": str(tmp_path / "runs"), "tensorboard": False}})
    pytest.MonkeyPatch().setattr(activations.ActivationStats, "on_fit_start", tracking)
    result = cli("train", config, plugins=[toy_recipes])
    assert result.exit_code == 130
    callback, modules = made[0]
    assert callback.handles == [] and all(not m._forward_hooks for m in modules)


def test_profiling_writes_a_trace_and_flame_graph_stacks(cli, simplenet_config, tmp_path):
    summary = train_json(cli, simplenet_config, "trainer.profile.wait=1", "trainer.profile.warmup=1", "trainer.profile.active=2")
    folder = tmp_path / "runs" / "classify-image" / "tiny" / "profile"
    traces = list(folder.glob("*.pt.trace.json"))
    assert len(traces) == 1 and json.loads(traces[0].read_text())["traceEvents"]
    stacks = (folder / "stacks.txt").read_text().splitlines()
    # folded stacks: "frame;frame;... <microseconds>", from the training step down into the model's forward
    assert stacks and all(line.rsplit(" ", 1)[1].isdigit() for line in stacks)
    assert any("_training_step" in line and "nets.py" in line and "_forward" in line for line in stacks)
    assert not any(key.startswith("memory/") for key in summary["metrics"])  # GPU memory: only on CUDA


def test_a_bad_profile_schedule_is_a_config_error(cli, simplenet_config):
    result = cli("train", simplenet_config, "trainer.profile.active=0")
    assert result.exit_code == 2 and "trainer.profile.active" in result.stderr
