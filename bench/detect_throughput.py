"""Images/s of `ptcli detect DIR` against a bare torchvision loop with the same
model, weights, inputs, batch size and threads (target ratio >= 0.9). Start-up is excluded on
both sides: each is timed from the end of its first batch to the end of its last.

The model is fasterrcnn_mobilenet_v3_large_fpn with random weights saved to a file (its COCO
weights would be a download; the cost of a forward pass barely depends on the weights), at
--threshold 0 so that both sides keep every box. Inputs: the 108 photos of
../shared/data/imagefolder_photos (about 320 px).

    python bench/detect_throughput.py [--data ../shared/data] [--device cpu] [--batch-size N]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import report

TARGET = 0.9
REPO = Path(__file__).resolve().parents[1]
MODEL = "fasterrcnn_mobilenet_v3_large_fpn"


def ptcli_rate(folder: Path, weights: Path, batch_size: int, device: str, expected: int) -> float:
    command = [sys.executable, "-m", "ptcli", "detect", str(folder), "--model", MODEL, "--weights", str(weights),
               "--threshold", "0", "--json", "--batch-size", str(batch_size), "--device", device]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1)
    stamps = [time.perf_counter() for _ in process.stdout]
    if process.wait() != 0 or len(stamps) != expected:
        sys.exit(f"ptcli failed (exit {process.returncode}, {len(stamps)} of {expected} results)")
    return (len(stamps) - batch_size) / (stamps[-1] - stamps[batch_size - 1])


def baseline_rate(paths: list[Path], model, batch_size: int, device: str) -> float:
    """The loop one writes from torchvision's docs: PIL, to_tensor, model(list), boxes to lists."""
    import torch
    from PIL import Image
    from torchvision.transforms.functional import to_tensor

    model.roi_heads.score_thresh = 0.0
    model = model.eval().to(device)
    first_batch_done = None
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            images = [to_tensor(Image.open(p).convert("RGB")).to(device) for p in paths[start:start + batch_size]]
            for out in model(images):
                out["boxes"].cpu().tolist(), out["scores"].cpu().tolist(), out["labels"].cpu().tolist()
            if first_batch_done is None:
                first_batch_done = time.perf_counter()
    return (len(paths) - batch_size) / (time.perf_counter() - first_batch_done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--batch-size", type=int, help="default: ptcli detect's (4 on CUDA, 1 on the CPU)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    import torch
    import torchvision
    from safetensors.torch import save_file

    if args.batch_size is None:
        args.batch_size = 4 if args.device.startswith("cuda") else 1
    folder = args.data / "imagefolder_photos"
    if not folder.is_dir():
        sys.exit(f"benchmark data not found: {folder} (see ../shared/data/README.md)")
    paths = sorted(p for p in folder.rglob("*.jpg"))
    torch.manual_seed(0)
    model = getattr(torchvision.models.detection, MODEL)(weights=None, weights_backbone=None)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.safetensors"
        save_file(model.state_dict(), weights)
        print(f"{len(paths)} images, batch size {args.batch_size}, device {args.device}, torch threads {torch.get_num_threads()}")
        base = baseline_rate(paths, model, args.batch_size, args.device)
        ours = ptcli_rate(folder, weights, args.batch_size, args.device, len(paths))
    report([("bare torchvision loop", f"{base:6.2f} images/s"), ("ptcli detect", f"{ours:6.2f} images/s")], ours / base, TARGET,
           figure="detect images/s", ours=f"{ours:.2f}", baseline=f"{base:.2f} (bare torchvision loop)")


if __name__ == "__main__":
    main()
