"""Seams of super-resolve's tiling on a network whose output spans the grey range: a random
RRDBNet with its last layer rescaled so that its output has mean 0.5 and std 0.2 on the image
(test nets output values near 0, where any tiling error hides). For tile sizes 32, 64 and 128
at x2 and x4, the largest difference from the untiled network in grey levels (0-255) and how
many values are off by more than one level. Goal: at most 1 level everywhere.

    python bench/sr_seams.py [--image ../shared/data/images/coffee.jpg] [--blocks 1] [--overlap 16]
"""

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins")]


def full_range_rrdbnet(scale: int, image, blocks: int, seed: int = 0):
    """A random RRDBNet whose output on ``image`` (1CHW) has mean 0.5 and std 0.2."""
    import torch

    from ptcli_super_resolve.models import build_rrdbnet
    from ptcli_super_resolve.tiling import _forward

    torch.manual_seed(seed)
    net = build_rrdbnet(scale=scale, num_feat=16, num_block=blocks, num_grow_ch=8).eval()
    with torch.inference_mode():
        out = _forward(net, image, scale)
        gain = 0.2 / out.std()
        net.conv_last.weight.mul_(gain)
        net.conv_last.bias.mul_(gain).add_(0.5 - out.mean() * gain)
    return net


def crop(path: Path, width: int, height: int):
    import numpy as np
    import torch
    from PIL import Image

    picture = Image.open(path).convert("RGB")
    left, top = (picture.width - width) // 2, (picture.height - height) // 2
    pixels = np.asarray(picture.crop((left, top, left + width, top + height)), dtype=np.float32) / 255
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


def measure(image, scale: int, tile: int, overlap: int, blocks: int) -> tuple[float, int]:
    import torch

    from ptcli_super_resolve.tiling import upscale

    net = full_range_rrdbnet(scale, image[None], blocks)
    whole = upscale(image, net, scale=scale, tile=None, overlap=overlap, device=torch.device("cpu"))
    tiled = upscale(image, net, scale=scale, tile=tile, overlap=overlap, device=torch.device("cpu"))
    difference = (tiled.clamp(0, 1) - whole.clamp(0, 1)).abs() * 255
    return float(difference.max()), int((difference > 1).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", type=Path, default=REPO.parent / "shared" / "data" / "images" / "coffee.jpg")
    parser.add_argument("--blocks", type=int, default=1)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--sizes", default="200x150,201x149")
    args = parser.parse_args()
    worst = 0.0
    for size in args.sizes.split(","):
        width, height = map(int, size.split("x"))
        image = crop(args.image, width, height)
        for scale in (2, 4):
            for tile in (32, 64, 128):
                largest, off = measure(image, scale, tile, args.overlap, args.blocks)
                worst = max(worst, largest)
                print(f"{size:>8}  x{scale}  tile {tile:>3}  overlap {args.overlap}: max {largest:7.4f} levels, "
                      f"{off:>6} values off by more than 1", flush=True)
    print(f"worst: {worst:.2f} grey levels (goal <= 1): {'OK' if worst <= 1 else 'MISSED'}")


if __name__ == "__main__":
    main()
