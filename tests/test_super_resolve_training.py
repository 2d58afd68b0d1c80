"""super-resolve training (PSNR and GAN stages) through `ptcli train`, the round trip and eval."""

import json

import numpy as np
import pytest
import torch
from conftest import REPO, torchrun, train_json, write_yaml

from ptcli.models.checkpoints import load_checkpoint


def make_sr_folder(root, count=4, size=64, seed=0):
    """root/hr/*.png and root/lr_x4/*.png (bicubic), smooth textures."""
    import cv2

    rng = np.random.default_rng(seed)
    (root / "hr").mkdir(parents=True)
    (root / "lr_x4").mkdir()
    y, x = np.mgrid[0:size, 0:size]
    for i in range(count):
        f = rng.uniform(0.05, 0.3, size=3)
        image = np.stack([127 + 100 * np.sin(f[c] * x + c + i) * np.cos(f[(c + 1) % 3] * y) for c in range(3)], axis=2)
        image = image.clip(0, 255).astype(np.uint8)
        cv2.imwrite(str(root / "hr" / f"{i}.png"), image)
        cv2.imwrite(str(root / "lr_x4" / f"{i}.png"), cv2.resize(image, (size // 4, size // 4), interpolation=cv2.INTER_CUBIC))
    return root


def sr_config(tmp_path, root, **sections):
    config = {
        "recipe": "super-resolve",
        "data": {"root": str(root), "crop": 32, "repeat": 4, "val_fraction": 0.25, "val_crop": 64},
        "model": {"num_feat": 8, "num_block": 1, "num_grow_ch": 4},
        "loss": {"ema": 0.0},
        "trainer": {"epochs": 2, "batch_size": 4, "lr": 0.001, "optimizer": "adam"},
        "run": {"dir": str(tmp_path / "runs"), "tensorboard": False},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    return write_yaml(tmp_path / "sr.yaml", config)


@pytest.fixture
def sr_data(tmp_path):
    return make_sr_folder(tmp_path / "sr")


def test_psnr_stage_trains_and_its_checkpoint_upscales(cli, tmp_path, sr_data):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = train_json(cli, sr_config(tmp_path, sr_data, run={"tensorboard": True}))
    assert {"val/psnr", "val/ssim", "train/pixel"} <= set(summary["metrics"])
    events = EventAccumulator(summary["run_dir"])
    events.Reload()
    samples = events.Images("samples/bicubic | model | original")
    assert len(samples) == 2 and (samples[0].width, samples[0].height) == (3 * 64, 64)  # one per epoch
    ckpt = load_checkpoint(summary["best_checkpoint"], recipe="super-resolve")
    assert ckpt.model == "rrdbnet" and ckpt.meta["model_args"] == {"scale": 4, "num_feat": 8, "num_block": 1, "num_grow_ch": 4}
    result = cli("super-resolve", sr_data / "lr_x4" / "0.png", "--checkpoint", summary["best_checkpoint"], "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["size"] == [64, 64]
    report = json.loads(cli("eval", summary["best_checkpoint"], sr_data, "--json").stdout)
    assert len(report["images"]) == 4 and report["lr"] == "paired" and report["bicubic_psnr"] > 20
    human = cli("eval", summary["best_checkpoint"], sr_data)
    assert "bicubic PSNR" in human.stdout and "mean" in human.stdout


def test_hr_only_data_is_degraded_on_the_fly(cli, tmp_path, sr_data):
    import shutil

    shutil.rmtree(sr_data / "lr_x4")
    summary = train_json(cli, sr_config(tmp_path, sr_data, data={"lr_dir": None}, trainer={"epochs": 1}))
    assert summary["metrics"]["val/psnr"] > 0
    report = json.loads(cli("eval", summary["best_checkpoint"], sr_data, "--json").stdout)
    assert report["lr"] == "bicubic"


def test_gan_stage_steps_both_optimizers_from_the_psnr_generator(cli, tmp_path, sr_data):
    psnr = train_json(cli, sr_config(tmp_path, sr_data, trainer={"epochs": 1}))["best_checkpoint"]
    config = sr_config(tmp_path, sr_data,
                       data={"crop": 128, "val_crop": 64},
                       model={"pretrained": psnr},
                       loss={"pixel": 0.01, "perceptual": 1.0, "perceptual_network": "efficientnet_lite0", "gan": 0.005,
                             "ema": 0.9},
                       trainer={"epochs": 1, "batch_size": 2},
                       run={"name": "gan"})
    make_big = make_sr_folder(tmp_path / "big", count=4, size=160)
    summary = train_json(cli, config, f"data.root={make_big}")
    metrics = summary["metrics"]
    assert {"train/gan_g", "train/gan_d", "train/perceptual", "lr/generator", "lr/discriminator"} <= set(metrics)
    run_dir = tmp_path / "runs" / "super-resolve" / "gan"
    state = torch.load(run_dir / "checkpoints" / "training_state.pt", weights_only=True)
    assert set(state["optimizers"]) == {"generator", "discriminator"}
    assert all(state["optimizers"][name]["state"] for name in ("generator", "discriminator"))  # both stepped
    exported = load_checkpoint(summary["last_checkpoint"]).state_dict
    torch.testing.assert_close(exported["conv_first.weight"], state["models"]["ema"]["conv_first.weight"])


@pytest.mark.slow
def test_gan_stage_under_ddp(tmp_path):
    """Two processes: the EMA copy, which has nothing to train and which DDP refuses to wrap, is
    only moved; the discriminator's BatchNorm runs forward thrice per step, which needs
    broadcast_buffers off."""
    config = sr_config(tmp_path, make_sr_folder(tmp_path / "big", count=4, size=160),
                       data={"crop": 128, "val_crop": 64},
                       loss={"pixel": 0.01, "perceptual": 1.0, "perceptual_network": "efficientnet_lite0", "gan": 0.005,
                             "ema": 0.9},
                       trainer={"epochs": 1, "batch_size": 2})
    done = torchrun(config)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # only rank 0 reports
    summary = json.loads(lines[0])
    assert {"train/gan_g", "train/gan_d"} <= set(summary["metrics"])
    state = torch.load(tmp_path / "runs" / "super-resolve" / "sr" / "checkpoints" / "training_state.pt", weights_only=True)
    assert all(state["optimizers"][name]["state"] for name in ("generator", "discriminator"))  # both stepped
    exported = load_checkpoint(summary["last_checkpoint"]).state_dict
    torch.testing.assert_close(exported["conv_first.weight"], state["models"]["ema"]["conv_first.weight"])
    assert not torch.equal(state["models"]["ema"]["conv_first.weight"], state["models"]["generator"]["conv_first.weight"])


def test_perceptual_loss_offline_says_what_to_do(cli, tmp_path, sr_data):
    result = cli("train", sr_config(tmp_path, sr_data, loss={"perceptual": 1.0}))
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "weights 'vgg19' are not on this machine: offline mode" in result.stderr


def test_perceptual_weights_from_a_local_file(tmp_path):
    import torchvision

    from ptcli_super_resolve.losses import PerceptualLoss, feature_network

    torch.manual_seed(0)
    path = tmp_path / "vgg19.pth"
    torch.save(torchvision.models.vgg19(weights=None).state_dict(), path)
    loss = PerceptualLoss(feature_network("vgg19", path), torch.device("cpu"))
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    assert float(loss(a, a)) == 0 and float(loss(a, b)) > 0


@pytest.mark.parametrize("override, message", [
    (["data.crop=30"], "must be a multiple of data.scale"),
    (["loss.gan=0.1"], "the VGG-style discriminator takes 128 or 256 px crops"),
    (["data.hr_dir=nothing"], "image folder not found"),
    (["data.crop=512"], "larger than an HR image"),
    (["model.pretrained=/no/such.safetensors"], "model.pretrained not found"),
    (["loss.perceptual_network=alexnet"], "loss.perceptual_network"),
])
def test_config_errors(cli, tmp_path, sr_data, override, message):
    result = cli("train", sr_config(tmp_path, sr_data), *override)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()


def test_unpaired_lr_folder(cli, tmp_path, sr_data):
    (sr_data / "lr_x4" / "3.png").unlink()
    result = cli("train", sr_config(tmp_path, sr_data))
    assert result.exit_code == 2 and "have no LR image of the same name" in result.stderr


def test_both_recipes_validate(cli):
    for name in ("esrgan-psnr", "esrgan-gan"):
        result = cli("train", REPO / "recipes" / f"{name}.yaml", "--print-config")
        assert result.exit_code == 0 and "recipe: super-resolve" in result.stdout


def test_checkpoint_with_model_and_eval_without_data(cli, tmp_path, sr_data):
    best = train_json(cli, sr_config(tmp_path, sr_data, trainer={"epochs": 1}))["best_checkpoint"]
    both = cli("super-resolve", sr_data / "lr_x4" / "0.png", "--checkpoint", best, "-m", "esrgan-x4")
    assert both.exit_code == 2 and "drop --model/--weights" in both.stderr
    missing = cli("eval", best, tmp_path / "nowhere")
    assert missing.exit_code == 2 and "data folder not found" in missing.stderr
