"""What only a CUDA machine can check: each recipe's default path on the GPU agrees with the
CPU, mixed precision trains, and inference under torchrun shares one GPU. Skipped without a
GPU; bench/gpu_check.sh runs them (pytest -m cuda)."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO, write_yaml

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_classify_image_on_cuda_matches_the_cpu(cli):
    runs = {device: cli("classify-image", REPO / "examples" / "cat.jpg", "--json", "--device", device)
            for device in ("cpu", "cuda")}
    assert all(r.exit_code == 0 for r in runs.values()), runs["cuda"].stderr
    cpu, gpu = (json.loads(runs[d].stdout)["predictions"] for d in ("cpu", "cuda"))
    assert [p["label"] for p in gpu[:3]] == [p["label"] for p in cpu[:3]]
    for a, b in zip(cpu, gpu):
        assert a["score"] == pytest.approx(b["score"], abs=2e-3)  # TF32 convolutions on the GPU


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_on_cuda_in_each_precision(cli, tmp_path, precision):
    import toy_recipes

    config = write_yaml(tmp_path / "toy.yaml", {"recipe": "toy-classify", "trainer": {"epochs": 2, "device": "cuda",
                        "precision": precision}, "run": {"dir": str(tmp_path / "runs"), "tensorboard": False}})
    result = cli("train", config, "--json", plugins=[toy_recipes])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["metrics"]["val/accuracy"] > 0.8


def test_super_resolve_half_on_cuda(cli, tmp_path, tiny_rrdbnet, shared_data):
    result = cli("super-resolve", shared_data / "superres" / "lr_x4" / "chelsea.png", "--weights", tiny_rrdbnet,
                 "--half", "--device", "cuda", "-o", tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["size"] == [448, 300]


def test_distributed_inference_shares_one_gpu(shared_data):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "ptcli",
               "classify-image", shared_data / "imagefolder_photos" / "val", "--json", "--batch-size", "4", "--device", "cuda"]
    done = subprocess.run(list(map(str, command)), capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    inputs = [json.loads(line)["input"] for line in done.stdout.splitlines()]
    assert len(inputs) == 28 and inputs == sorted(inputs)


def test_detect_on_cuda_matches_the_cpu(cli, tmp_path, shared_data):
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)
    save_file(model.state_dict(), tmp_path / "w.safetensors")
    runs = {device: cli("detect", shared_data / "images" / "cat.jpg", "--model", "fasterrcnn_mobilenet_v3_large_fpn",
                        "--weights", tmp_path / "w.safetensors", "--threshold", "0", "--max-detections", "5",
                        "--device", device, "--json") for device in ("cpu", "cuda")}
    assert all(r.exit_code == 0 for r in runs.values()), runs["cuda"].stderr
    cpu, gpu = (json.loads(runs[d].stdout)["detections"] for d in ("cpu", "cuda"))
    assert [d["label"] for d in cpu] == [d["label"] for d in gpu]
    for a, b in zip(cpu, gpu):
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1.0) and a["score"] == pytest.approx(b["score"], abs=1e-3)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_detect_trains_on_cuda(cli, tmp_path, precision):
    from detect_data import detect_config, make_coco

    root = make_coco(tmp_path / "coco", {"train": 4, "val": 2})
    config = write_yaml(tmp_path / "d.yaml", detect_config(tmp_path, root, model={"pretrained": False},
                                                           trainer={"device": "cuda", "precision": precision}))
    result = cli("train", config, "--json")
    assert result.exit_code == 0, result.stderr
    assert "val/map" in json.loads(result.stdout.strip().splitlines()[-1])["metrics"]


def test_attack_on_cuda_fools_the_saved_file(cli, tmp_path, shared_data):
    result = cli("attack", shared_data / "images" / "cat.jpg", "-o", tmp_path, "--device", "cuda", "--json")
    assert result.exit_code == 0, result.stderr
    r = json.loads(result.stdout)
    assert r["success"] and r["linf"] <= 4 / 255 + 1e-6
