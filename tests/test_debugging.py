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


# --- gradient checkpointing -----------------------------------------------------------------------

MEMORY_PROBE = """
import json, sys, torch
from ptcli_super_resolve.models import build_rrdbnet


def peak_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])



from ptcli.training.gradient_checkpointing import checkpoint_blocks
torch.manual_seed(0)
net = build_rrdbnet(scale=4, num_feat=32, num_block=6, num_grow_ch=16)
if sys.argv[1] == "on":
    checkpoint_blocks(net, "body")
net.train()
x = torch.rand(2, 3, 96, 96)
# The peak RSS, reset to the current RSS: getrusage's maxrss would carry the forking parent's
# peak across exec (a big pytest process hid the whole difference).
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
before = peak_kb()
loss = net(x).mean()
loss.backward()
after = peak_kb()
print(json.dumps({"loss": loss.item(), "grad": net.conv_first.weight.grad.abs().sum().item(), "grown_kb": after - before}))
"""


@pytest.mark.slow
def test_checkpointed_rrdbnet_gives_the_same_loss_and_gradients_with_less_memory():
    import subprocess
    import sys

    from conftest import REPO

    import os

    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak RSS")
    runs = {}
    for mode in ("off", "on"):  # each in its own process
        done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, mode], capture_output=True, text=True, cwd=REPO, timeout=300)
        assert done.returncode == 0, done.stderr
        runs[mode] = json.loads(done.stdout)
    assert runs["on"]["loss"] == runs["off"]["loss"] and runs["on"]["grad"] == pytest.approx(runs["off"]["grad"], rel=1e-6)
    # measured: the forward and backward grow the process by 790 MB without, 454 MB with
    assert runs["on"]["grown_kb"] < 0.75 * runs["off"]["grown_kb"], runs


def test_grad_checkpointing_trains_super_resolve_to_the_same_numbers(cli, tmp_path):
    from test_super_resolve_training import make_sr_folder, sr_config

    root = make_sr_folder(tmp_path / "sr")
    config = sr_config(tmp_path, root, model={"num_feat": 8, "num_block": 2, "num_grow_ch": 4})
    plain = train_json(cli, config, "run.name=plain")
    checkpointed = train_json(cli, config, "run.name=checkpointed", "trainer.grad_checkpointing=true")
    for key, value in plain["metrics"].items():
        if key.startswith(("train/", "val/")):
            assert checkpointed["metrics"][key] == pytest.approx(value, rel=1e-5), key
    from ptcli.models.checkpoints import load_checkpoint

    assert "body.0.rdb1.conv1.weight" in load_checkpoint(checkpointed["last_checkpoint"]).state_dict  # keys unchanged


def test_grad_checkpointing_with_hugging_face_and_where_it_is_not_supported(cli, tmp_path, tiny_gpt2, topic_corpus,
                                                                            lstm_config, simplenet_config):
    from test_generate_text_training import lm_config

    config = lm_config(tmp_path, topic_corpus, pretrained=str(tiny_gpt2))
    plain = train_json(cli, config, "run.name=plain", "trainer.epochs=1")
    checkpointed = train_json(cli, config, "run.name=checkpointed", "trainer.epochs=1", "trainer.grad_checkpointing=true")
    # GPT-2 has dropout: the recomputed forward must draw the same masks (torch restores the RNG) for this to hold
    assert checkpointed["metrics"]["train/loss"] == pytest.approx(plain["metrics"]["train/loss"], rel=1e-5)
    for refused, message in ((lstm_config, "model lstm does not support it"), (simplenet_config, "do not support gradient checkpointing")):
        result = cli("train", refused, "trainer.grad_checkpointing=true")
        assert result.exit_code == 2 and message in result.stderr, result.stderr
