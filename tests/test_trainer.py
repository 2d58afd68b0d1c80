"""The shared trainer, through the CLI, with the small recipes in toy_recipes.py."""

import json
import math

import pytest
import toy_recipes
import torch
from conftest import torchrun, write_yaml

from ptcli.models.checkpoints import load_checkpoint


def toy_config(tmp_path, name="toy.yaml", recipe="toy-classify", **trainer):
    data = {"recipe": recipe, "trainer": {"epochs": 3, "batch_size": 8, "lr": 0.05, **trainer}, "run": {"dir": str(tmp_path / "runs")}}
    return write_yaml(tmp_path / name, data)


@pytest.fixture
def train(cli):
    def run(*args):
        result = cli("train", *args, "--json", plugins=[toy_recipes])
        assert result.exit_code == 0, result.stderr + result.stdout
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run


def read_metrics(run_dir):
    with open(f"{run_dir}/metrics.jsonl") as stream:
        return [json.loads(line) for line in stream]


def test_run_folder_layout_and_json_summary(train, tmp_path):
    summary = train(toy_config(tmp_path))
    run = tmp_path / "runs" / "toy-classify" / "toy"
    assert summary["run_dir"] == str(run)
    assert summary["best_checkpoint"] == str(run / "checkpoints" / "best.safetensors")
    assert summary["last_checkpoint"] == str(run / "checkpoints" / "last.safetensors")
    assert summary["metrics"]["epoch"] == 3 and 0 <= summary["metrics"]["val/accuracy"] <= 1
    for name in ("config.yaml", "metrics.jsonl", "checkpoints/training_state.pt", "checkpoints/last.json", "checkpoints/best.json"):
        assert (run / name).is_file(), name
    assert list(run.glob("events.out.tfevents.*")), "no TensorBoard events"
    records = read_metrics(run)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["step"] == 3 * 8  # 64 samples / batch 8, per epoch
    last = load_checkpoint(run / "checkpoints" / "last.safetensors", recipe="toy-classify")
    assert last.model == "toy-mlp" and last.meta["training"]["epoch"] == 3
    assert not list(run.rglob("*.tmp")), "temporary files left behind"


def test_a_second_run_with_the_same_name_gets_a_new_folder(train, tmp_path):
    first = train(toy_config(tmp_path))["run_dir"]
    second = train(toy_config(tmp_path))["run_dir"]
    assert second == first + "-2"


def test_tensorboard_has_scalars_against_the_global_step(train, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train(toy_config(tmp_path, log_every=4))["run_dir"]
    events = EventAccumulator(run)
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "val/loss", "val/accuracy", "train_step/loss"} <= set(tags)
    assert [e.step for e in events.Scalars("val/accuracy")] == [8, 16, 24]
    assert [e.step for e in events.Scalars("train_step/loss")] == [4, 8, 12, 16, 20, 24]


def test_two_runs_with_one_seed_give_the_same_metrics(train, tmp_path):
    runs = [train(toy_config(tmp_path, mixup=0.4, label_smoothing=0.1)) for _ in range(2)]
    strip = lambda records: [{k: v for k, v in r.items() if k != "time_s"} for r in records]  # noqa: E731
    assert strip(read_metrics(runs[0]["run_dir"])) == strip(read_metrics(runs[1]["run_dir"]))
    other = train(toy_config(tmp_path, seed=1))
    assert strip(read_metrics(other["run_dir"])) != strip(read_metrics(runs[0]["run_dir"]))


def test_interrupt_saves_state_and_resume_matches_an_uninterrupted_run(cli, tmp_path):
    config = toy_config(tmp_path, epochs=4, scheduler={"name": "one-cycle"})
    full = cli("train", config, "run.name=full", "--json", plugins=[toy_recipes])
    assert full.exit_code == 0, full.stderr

    # A real SIGINT after 13 batches: in epoch 2 (8 batches per epoch), mid-epoch.
    stopped = cli("train", config, "run.name=cut", "data.interrupt_at=13", "--json", plugins=[toy_recipes])
    assert stopped.exit_code == 130
    error = json.loads(stopped.stdout.strip().splitlines()[-1])
    run = tmp_path / "runs" / "toy-classify" / "cut"
    assert "interrupted in epoch 2, after batch 5" in error["error"] and f"resume={run}" in error["error"]
    assert [r["epoch"] for r in read_metrics(run)] == [1]

    resumed = cli("train", config, f"resume={run}", "data.interrupt_at=null", "--json", plugins=[toy_recipes])
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["run_dir"] == str(run)
    strip = lambda records: [{k: v for k, v in r.items() if k != "time_s"} for r in records]  # noqa: E731
    cut, uninterrupted = strip(read_metrics(run)), strip(read_metrics(tmp_path / "runs" / "toy-classify" / "full"))
    assert [r["epoch"] for r in cut] == [1, 2, 3, 4]  # no epoch counted twice
    for a, b in zip(cut, uninterrupted):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key


def test_interrupt_during_validation_stops_after_that_epoch(cli, tmp_path):
    config = toy_config(tmp_path, epochs=3)
    stopped = cli("train", config, "data.interrupt_in_validation=true", plugins=[toy_recipes])
    assert stopped.exit_code == 130 and "interrupted after epoch 1; resume with" in stopped.stderr
    run = tmp_path / "runs" / "toy-classify" / "toy"
    assert [r["epoch"] for r in read_metrics(run)] == [1]
    resumed = cli("train", config, f"resume={run}", "data.interrupt_in_validation=false", plugins=[toy_recipes])
    assert resumed.exit_code == 0, resumed.stderr
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3]


def test_resume_of_a_folder_that_is_not_a_run(cli, tmp_path):
    result = cli("train", toy_config(tmp_path), f"resume={tmp_path}", plugins=[toy_recipes])
    assert result.exit_code == 2 and "not a ptcli run folder" in result.stderr


def test_resume_of_another_recipes_run_is_refused(train, cli, tmp_path):
    gan_run = train(toy_config(tmp_path, name="gan.yaml", recipe="toy-gan", epochs=1))["run_dir"]
    result = cli("train", toy_config(tmp_path), f"resume={gan_run}", plugins=[toy_recipes])
    assert result.exit_code == 2 and "is a toy-gan run" in result.stderr


def test_gan_shape_two_models_two_optimizers_in_turn(train, tmp_path):
    summary = train(toy_config(tmp_path, name="gan.yaml", recipe="toy-gan", epochs=40, batch_size=16, lr=0.003))
    records = read_metrics(summary["run_dir"])
    assert {"train/loss_d", "train/loss_g", "lr/generator", "lr/discriminator"} <= set(records[-1])
    state = torch.load(f"{summary['run_dir']}/checkpoints/training_state.pt", weights_only=True)
    steps = {name: {int(s["step"]) for s in opt["state"].values()} for name, opt in state["optimizers"].items()}
    assert steps == {"generator": {40 * 8}, "discriminator": {40 * 8}}  # both stepped every batch
    exported = load_checkpoint(summary["best_checkpoint"], recipe="toy-gan")
    assert exported.model == "toy-generator" and set(exported.state_dict) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    generator = toy_recipes.ToyGan(None).build_models()["generator"]
    noise = torch.randn(2000, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = generator(noise).mean(0)
        generator.load_state_dict(load_checkpoint(summary["last_checkpoint"]).state_dict)
        after = generator(noise).mean(0)
    # It starts near the origin; the adversarial game pulls it towards the real data at (2, 2).
    assert torch.dist(before, toy_recipes.TARGET) > 2.0
    assert torch.dist(after, toy_recipes.TARGET) < 1.0


def test_a_generator_step_leaves_the_discriminator_gradients_alone():
    from ptcli.training.trainer import Trainer

    config = toy_recipes.GanConfig(recipe="toy-gan")
    trainer = Trainer(toy_recipes.ToyGan(config))
    trainer.prepare()
    discriminator = trainer.models["discriminator"]
    marker = [torch.full_like(p, 7.0) for p in discriminator.parameters()]
    for p, m in zip(discriminator.parameters(), marker):
        p.grad = m.clone()
    fake = trainer.models["generator"](torch.randn(4, 4))
    trainer.optimize(discriminator(fake).mean(), "generator")
    assert all(torch.equal(p.grad, m) for p, m in zip(discriminator.parameters(), marker))


def test_freeze_unfreeze_and_differential_learning_rates(train, tmp_path):
    summary = train(toy_config(tmp_path, epochs=3, freeze=["body"], unfreeze_at={"body": 3}, lr_mult={"body": 0.1}))
    records = read_metrics(summary["run_dir"])
    assert records[0]["lr/body"] == pytest.approx(0.005) and records[0]["lr/head"] == pytest.approx(0.05)
    state = torch.load(f"{summary['run_dir']}/checkpoints/training_state.pt", weights_only=True)
    body_state = state["optimizers"]["main"]["state"]
    # AdamW keeps a step count per parameter: body only trained in epoch 3, the head in all three.
    body_ids, head_ids = state["optimizers"]["main"]["param_groups"][0]["params"], state["optimizers"]["main"]["param_groups"][1]["params"]
    assert {int(body_state[i]["step"]) for i in body_ids} == {8}
    assert {int(body_state[i]["step"]) for i in head_ids} == {24}


def test_frozen_group_does_not_change(cli, tmp_path):
    result = cli("train", toy_config(tmp_path, epochs=1, freeze=["body"]), "--json", plugins=[toy_recipes])
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    from ptcli.training.trainer import seed_everything

    seed_everything(0, False)
    initial = toy_recipes.ToyClassify(None).build_models()["model"]
    trained = load_checkpoint(summary["last_checkpoint"]).state_dict
    assert torch.equal(trained["0.weight"], initial[0].weight.detach())
    assert not torch.equal(trained["3.weight"], initial[3].weight.detach())


@pytest.mark.parametrize("setting, message", [
    ("trainer.freeze=[backbone]", "no parameter group 'backbone'; its groups are body, head"),
    ("trainer.lr_mult={heda: 2}", "no parameter group 'heda'"),
    ("trainer.unfreeze_at={body: 2}", "the group is not frozen"),
    ("trainer.precision=fp16", "fp16 needs a CUDA device"),
])
def test_trainer_setting_errors(cli, tmp_path, setting, message):
    overrides = [setting] + (["trainer.device=cpu"] if "fp16" in setting else [])
    result = cli("train", toy_config(tmp_path), *overrides, plugins=[toy_recipes])
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "runs").exists()  # a run that cannot start leaves no folder behind


def test_precision_the_recipe_does_not_declare(cli, tmp_path):
    result = cli("train", toy_config(tmp_path, recipe="toy-gan"), "trainer.precision=bf16", plugins=[toy_recipes])
    assert result.exit_code == 2 and "this recipe trains in fp32" in result.stderr


def test_bf16_training_on_cpu(train, tmp_path):
    summary = train(toy_config(tmp_path, epochs=2, precision="bf16", device="cpu"))
    assert summary["metrics"]["val/accuracy"] > 0.8


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_asked_for_on_a_cpu_machine(cli, tmp_path):
    result = cli("train", toy_config(tmp_path), "trainer.device=cuda", plugins=[toy_recipes])
    assert result.exit_code == 2 and "no CUDA device" in result.stderr
    assert "trainer.device=cuda asked for" in result.stderr and "--device" not in result.stderr  # train has no --device


@pytest.mark.parametrize("scheduler, check", [
    ("step", lambda lrs: lrs == pytest.approx([0.05, 0.05, 0.005, 0.005])),  # the rate each epoch trained at
    ("cosine", lambda lrs: lrs[0] > lrs[1] > lrs[2] > lrs[3] >= 0),
    ("one-cycle", lambda lrs: lrs[0] > lrs[1] > lrs[2] > lrs[3] and lrs[3] < 1e-6),  # peaks in epoch 1, ends at max/1e5
    ("plateau", lambda lrs: all(lr <= 0.05 for lr in lrs)),
])
def test_schedulers(train, tmp_path, scheduler, check):
    summary = train(toy_config(tmp_path, epochs=4, scheduler={"name": scheduler, "step_size": 1 if scheduler != "step" else 2}))
    lrs = [r["lr/head"] for r in read_metrics(summary["run_dir"])]
    assert check(lrs), lrs


def test_gradient_accumulation_and_clipping_step_less_often(train, tmp_path):
    summary = train(toy_config(tmp_path, epochs=1, grad_accum=4, grad_clip=0.5))
    assert read_metrics(summary["run_dir"])[-1]["step"] == 2  # 8 batches / 4


def test_sgd_and_adam_optimizers(train, tmp_path):
    for name in ("sgd", "adam"):
        summary = train(toy_config(tmp_path, epochs=2, optimizer=name))
        assert math.isfinite(summary["metrics"]["train/loss"])


def test_early_stopping(cli, tmp_path):
    # lr 0 cannot improve anything: training stops after `patience` epochs without progress.
    config = toy_config(tmp_path, epochs=10, lr=1e-12, early_stopping={"patience": 2, "min_delta": 0.5})
    result = cli("train", config, plugins=[toy_recipes])
    assert result.exit_code == 0, result.stderr
    assert "early stop: val/accuracy has not improved for 2 epochs" in result.stdout
    assert len(read_metrics(tmp_path / "runs" / "toy-classify" / "toy")) == 3


def test_lr_find_leaves_the_model_untouched_and_suggests_a_rate():
    from ptcli.training.lr_finder import lr_range_test
    from ptcli.training.trainer import Trainer

    trainer = Trainer(toy_recipes.ToyClassify(toy_recipes.ToyConfig(recipe="toy-classify")))
    trainer.prepare()
    before = {k: v.clone() for k, v in trainer.models["model"].state_dict().items()}
    optimizer_before = json.dumps(trainer.optimizers["main"].optimizer.state_dict()["param_groups"], default=str)
    result = lr_range_test(trainer, num_iter=60)
    after = trainer.models["model"].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not trainer.optimizers["main"].optimizer.state_dict()["state"]
    assert json.dumps(trainer.optimizers["main"].optimizer.state_dict()["param_groups"], default=str) == optimizer_before
    assert result.suggestion is not None and 1e-7 < result.suggestion < 10
    assert len(result.lrs) == len(result.losses) and result.lrs == sorted(result.lrs)


def test_lr_find_cli_writes_a_png(cli, tmp_path):
    plot = tmp_path / "lr.png"
    result = cli("lr-find", toy_config(tmp_path), "--plot", plot, "--iterations", "40", "--json", plugins=[toy_recipes])
    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["plot"] == str(plot) and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert found["suggested_lr"] > 0
    assert not (tmp_path / "runs").exists()  # lr-find starts no run


def test_lr_find_refuses_several_optimizers(cli, tmp_path):
    result = cli("lr-find", toy_config(tmp_path, recipe="toy-gan"), plugins=[toy_recipes])
    assert result.exit_code == 2 and "one optimizer" in result.stderr


def test_smoothing_and_steepest_descent():
    from ptcli.training.lr_finder import smoothed, steepest_descent

    assert smoothed([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])  # bias-corrected
    lrs = [10 ** (-6 + i * 0.25) for i in range(25)]
    losses = [2.0 - math.tanh(2 * (math.log10(lr) + 3)) for lr in lrs]  # falls fastest at 10^-3
    assert steepest_descent(lrs, losses) == pytest.approx(1e-3)


@pytest.mark.slow
def test_ddp_two_cpu_processes_with_gloo(tmp_path, simplenet_config):
    done = torchrun(simplenet_config)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # only rank 0 reports
    summary = json.loads(lines[0])
    runs = list((tmp_path / "runs" / "classify-image").iterdir())
    assert [r.name for r in runs] == ["tiny"]  # only rank 0 writes
    records = read_metrics(summary["run_dir"])
    # 36 images, batch 8 per process, 2 processes: 3 steps per epoch instead of 5.
    assert [r["step"] for r in records] == [3, 6]
    assert load_checkpoint(summary["best_checkpoint"], recipe="classify-image").classes == ["blue", "green", "red"]


def test_gradient_clipping_bounds_the_update():
    from ptcli.training.trainer import Trainer

    config = toy_recipes.ToyConfig(recipe="toy-classify", trainer={"optimizer": "sgd", "momentum": 0, "lr": 1.0, "grad_clip": 0.01})
    trainer = Trainer(toy_recipes.ToyClassify(config))
    trainer.prepare()
    model = trainer.models["model"]
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    loss = model(torch.full((4, 2), 100.0)).pow(2).mean()  # a huge gradient
    trainer.optimize(loss, None)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.linalg.vector_norm(after - before) == pytest.approx(0.01, rel=1e-3)  # lr 1 x clipped norm


def test_label_smoothing_and_mixup():
    from ptcli.training.classification import ClassificationLoss

    logits, targets = torch.tensor([[20.0, -20.0], [-20.0, 20.0]]), torch.tensor([0, 1])
    assert float(ClassificationLoss()(logits, targets)) < 1e-6
    assert float(ClassificationLoss(label_smoothing=0.2)(logits, targets)) > 1.0  # confident logits now cost
    torch.manual_seed(0)
    mix = ClassificationLoss(mixup_alpha=0.4)
    inputs = torch.stack([torch.zeros(3), torch.ones(3), 2 * torch.ones(3), 3 * torch.ones(3)])
    mixed, a, b, lam = mix.mix(inputs, torch.arange(4))
    assert 0 < lam < 1 and torch.equal(a, torch.arange(4))
    assert torch.allclose(mixed, lam * inputs + (1 - lam) * inputs[b])
    off = ClassificationLoss().mix(inputs, torch.arange(4))
    assert off[3] == 1.0 and off[0] is inputs


@pytest.mark.slow
def test_ddp_with_a_frozen_backbone(tmp_path, simplenet_config):
    """DDP must wrap the model after freezing, or it waits for gradients that never come."""
    done = torchrun(simplenet_config, "model.name=resnet18", "model.pretrained=false", "data.image_size=32",
                    "data.resize=32", "trainer.freeze=[backbone]", "trainer.epochs=1")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    trained = load_checkpoint(summary["last_checkpoint"]).state_dict
    from ptcli.training.trainer import seed_everything
    from ptcli_classify_image.models import build_model, make_registry

    seed_everything(0, False)  # as the run did, so this is the run's starting point
    initial = build_model(make_registry().get("resnet18"), 3, transfer_head="book").state_dict()
    assert torch.equal(trained["backbone.conv1.weight"], initial["backbone.conv1.weight"])  # frozen
    assert not torch.equal(trained["head.0.weight"], initial["head.0.weight"])  # trained


def test_a_second_ctrl_c_stops_at_once(cli, tmp_path):
    class TwiceInterrupted(toy_recipes.ToyClassify):
        def training_step(self, batch, ctx):
            losses = super().training_step(batch, ctx)
            if self.batches == 3:
                from interrupts import ctrl_c_to_self

                ctrl_c_to_self()
                ctrl_c_to_self()
            return losses

    import types

    from ptcli import hookimpl
    from ptcli.plugins.recipe import Recipe

    module = types.ModuleType("twice")
    module.register_recipes = hookimpl(lambda register: register(Recipe(name="twice", help="x", training=TwiceInterrupted)))
    result = cli("train", toy_config(tmp_path, recipe="twice"), plugins=[module])
    assert result.exit_code == 130 and result.stderr.strip() == "error: interrupted"
    assert not (tmp_path / "runs" / "twice" / "toy" / "checkpoints").exists()  # nothing saved mid-step


def test_resume_without_or_with_a_broken_training_state(train, cli, tmp_path):
    run = train(toy_config(tmp_path, epochs=1))["run_dir"]
    state = tmp_path / "runs" / "toy-classify" / "toy" / "checkpoints" / "training_state.pt"
    state.write_bytes(b"not a torch file")
    result = cli("train", toy_config(tmp_path), f"resume={run}", plugins=[toy_recipes])
    assert result.exit_code == 1 and "cannot read training state" in result.stderr
    state.unlink()
    result = cli("train", toy_config(tmp_path), f"resume={run}", plugins=[toy_recipes])
    assert result.exit_code == 2 and "no training state to resume from" in result.stderr


def test_a_tie_of_the_monitored_metric_goes_to_the_lower_val_loss():
    from types import SimpleNamespace

    from ptcli.training.callbacks import MonitorBest
    from ptcli.training.trainer import Position

    trainer = SimpleNamespace(position=Position(), improved=False, task=SimpleNamespace(monitor_mode="max"),
                              cfg=SimpleNamespace(early_stopping=SimpleNamespace(min_delta=0.0)),
                              monitored=lambda record: record["val/accuracy"])
    monitor, chosen = MonitorBest(), []
    for epoch, (accuracy, loss) in enumerate([(0.8, 0.9), (1.0, 0.7), (1.0, 0.2), (1.0, 0.5), (0.9, 0.1)], start=1):
        trainer.position.epoch = epoch
        monitor.on_epoch_end(trainer, {"val/accuracy": accuracy, "val/loss": loss})
        chosen.append(trainer.improved)
    assert chosen == [True, True, True, False, False]
    assert trainer.position.best_epoch == 3 and trainer.position.best_loss == 0.2
    assert trainer.position.bad_epochs == 3  # a won tie is not progress for early stopping


def test_progress_inside_an_epoch_when_stderr_is_a_log(cli, tmp_path, monkeypatch):
    """No terminal (a log file, CI): the bar is off, and lines inside each epoch say how far it
    is, how fast and how long is left (every PTCLI_PROGRESS_SECONDS: 5 s; here 0.05 s, with
    batches of 0.02 s)."""
    import time

    step = toy_recipes.ToyClassify.training_step
    monkeypatch.setattr(toy_recipes.ToyClassify, "training_step", lambda self, *a: (time.sleep(0.02), step(self, *a))[1])
    monkeypatch.setenv("PTCLI_PROGRESS_SECONDS", "0.05")
    result = cli("train", toy_config(tmp_path), "trainer.epochs=2", plugins=[toy_recipes])
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "batches/s" in line]
    assert lines and lines[0].startswith("epoch 1/2: batch ") and any(line.startswith("epoch 2/2: batch ") for line in lines)
    assert all(" left" in line and ("loss " in line or ": batch 0/" in line) for line in lines)  # (no loss before a batch)
    assert "batches/s" not in result.stdout


def test_ema_checkpoints_hold_the_averaged_weights_and_resume_continues_the_same_average(cli, train, tmp_path):
    """trainer.ema for any recipe: the checkpoints are the average (not the trained weights,
    which the resumable state keeps beside it), validation scores the average, and a run
    interrupted mid-epoch and resumed ends with the same average as one that was not."""
    from safetensors.torch import load_file

    config = toy_config(tmp_path, epochs=4, ema={"decay": 0.9, "warmup": 5})
    full = train(config, "run.name=full")
    run = tmp_path / "runs" / "toy-classify" / "full"
    state = torch.load(run / "checkpoints" / "training_state.pt", weights_only=True)
    last = load_file(run / "checkpoints" / "last.safetensors")
    trained, averaged = state["models"]["model"], state["ema"]["model"]
    assert state["ema"]["model"]["n_averaged"].item() == 4 * 8  # one update per optimizer step
    for key, value in last.items():
        assert torch.equal(value, averaged[f"module.{key}"]), key
    assert any(not torch.equal(value, trained[key]) for key, value in last.items())  # not the trained weights
    plain = train(toy_config(tmp_path, name="plain.yaml", epochs=4), "run.name=plain")
    assert read_metrics(plain["run_dir"])[-1]["val/loss"] != read_metrics(full["run_dir"])[-1]["val/loss"]

    stopped = cli("train", config, "run.name=cut", "data.interrupt_at=13", "--json", plugins=[toy_recipes])
    assert stopped.exit_code == 130
    cut = tmp_path / "runs" / "toy-classify" / "cut"
    resumed = cli("train", config, f"resume={cut}", "data.interrupt_at=null", "--json", plugins=[toy_recipes])
    assert resumed.exit_code == 0, resumed.stderr
    again = load_file(cut / "checkpoints" / "last.safetensors")
    for key, value in last.items():
        torch.testing.assert_close(again[key], value, atol=1e-6, rtol=0)
    for a, b in zip(read_metrics(cut), read_metrics(run)):
        assert a["val/loss"] == pytest.approx(b["val/loss"], rel=1e-5, abs=1e-7)
    # A run begun without an average cannot be resumed with one (resume takes the run's own
    # config; an override asks for the average).
    plain_cut = cli("train", toy_config(tmp_path, name="p.yaml", epochs=4), "run.name=pcut", "data.interrupt_at=13",
                    plugins=[toy_recipes])
    assert plain_cut.exit_code == 130
    refused = cli("train", config, f"resume={tmp_path / 'runs' / 'toy-classify' / 'pcut'}", "data.interrupt_at=null",
                  "trainer.ema.decay=0.9", plugins=[toy_recipes])
    assert refused.exit_code == 2 and "kept no average of its weights" in refused.stderr


def test_compile_trains_as_eager_does(train, tmp_path):
    """trainer.compile: the toy model compiled (TorchInductor; a C++ compiler on the CPU)
    trains to the eager run's numbers (without dropout: compiled dropout draws its masks from
    another generator), and its checkpoints are the plain network's."""
    eager = train(toy_config(tmp_path, name="eager.yaml", epochs=2), "run.name=eager", "data.dropout=0")
    compiled = train(toy_config(tmp_path, epochs=2, compile="default"), "run.name=compiled", "data.dropout=0")
    for a, b in zip(read_metrics(compiled["run_dir"]), read_metrics(eager["run_dir"])):
        assert a["val/loss"] == pytest.approx(b["val/loss"], rel=1e-4, abs=1e-6)
    last = load_checkpoint(compiled["last_checkpoint"], recipe="toy-classify")
    assert not any("_orig_mod" in key for key in last.state_dict)


def test_a_model_that_cannot_compile_trains_eagerly_with_one_warning(cli, tmp_path, monkeypatch):
    class Refuses(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.inner = module

        def forward(self, *args, **kwargs):
            raise RuntimeError("backend='inductor' raised:\nCppCompileError: no C++ compiler\n(long trace)")

    monkeypatch.setattr(torch, "compile", lambda module, **options: Refuses(module))
    result = cli("train", toy_config(tmp_path, epochs=2, compile="max-autotune"), "--json", plugins=[toy_recipes])
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "torch.compile failed" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: trainer.compile=max-autotune: torch.compile failed (RuntimeError")
    assert "training eagerly" in warnings[0]
    eager = cli("train", toy_config(tmp_path, name="e.yaml", epochs=2), "run.name=e", "--json", plugins=[toy_recipes])
    ours = json.loads(result.stdout.strip().splitlines()[-1])["metrics"]
    theirs = json.loads(eager.stdout.strip().splitlines()[-1])["metrics"]
    assert ours["val/loss"] == pytest.approx(theirs["val/loss"], rel=1e-6)
    refused = cli("train", toy_config(tmp_path, name="b.yaml", compile="fast"), plugins=[toy_recipes])
    assert refused.exit_code == 2 and "trainer.compile" in refused.stderr


@pytest.mark.parametrize("event", [1, 3, 9, 20])
def test_a_second_ctrl_c_stops_at_once_whatever_handler_came_before(cli, tmp_path, event):
    """A handler left by an earlier run in this process (one that only sets a flag) must not
    swallow the second Ctrl-C: the suite met this once."""
    import signal

    import toy_recipes as toys

    leftover = lambda signum, frame: None  # noqa: E731
    leftover._ptcli_stop_handler = True  # what a trainer's own handler looks like
    previous = signal.signal(signal.SIGINT, leftover)
    try:
        config = toy_config(tmp_path)
        result = cli("train", config, f"data.sigint_at_event={event}", "data.sigint_twice=true", plugins=[toys])
        assert result.exit_code == 130 and result.stderr.strip().splitlines()[-1] == "error: interrupted"
    finally:
        signal.signal(signal.SIGINT, previous)
