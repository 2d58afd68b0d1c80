"""super-resolve tiled against untiled, where both fit, and the peak memory of a large upscale.

Time: a small RRDBNet from a config (6 blocks, 32 features) upscales a 512x512 photo x4 (a
2048x2048 result) on the CPU: ptcli's tiled path (`--tile 256`, 16 px of blended overlap,
channels_last) against the bare baseline, the same model called once on the whole image as a
plain PyTorch script would; median of 3 runs each, alternating. Target: tiled >= 1.0x untiled.

Memory: the real 23-block RRDBNet (random weights) on a 2048x2048 input (an 8192x8192 result,
written as a PNG) with --tile 128 and 256, each in a child process whose peak resident memory
the OS reports. The peak is the process (torch, the model: about 0.45 GB), the result canvas
(0.8 GB, float32) and one tile's activations, whose largest are the 64-channel maps at the
output resolution (0.34 GB each at a 288 px tile, 4x upscaled; a few live at once).
A whole run takes most of an hour on 2 cores, so the child computes each distinct tile shape
once (corners, edges, inside: 9 of the 81 tiles) and reuses that output for the tiles of the
same shape; the memory pattern (the output canvas, one tile's activations at a time, the PNG)
is the full run's. Target: under 2 GB; the peak does not grow with the image beyond its canvas.

    python bench/sr_tiling.py [--data ../shared/data] [--skip-memory]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import record, report

REPO = Path(__file__).resolve().parents[1]
TARGET = 1.0
LIMIT_GB = 2.0


def photo(data: Path, size: int):
    """A real photo, cropped square and resized to ``size``, as a (3, size, size) tensor in [0, 1]."""
    from PIL import Image

    from ptcli.vision.imaging import to_pixels

    candidates = sorted((data / "superres").rglob("*.png")) + sorted((data / "images").glob("*.jpg"))
    source = candidates[0] if candidates else REPO / "examples" / "cat.jpg"
    image = Image.open(source).convert("RGB")
    side = min(image.size)
    image = image.crop((0, 0, side, side)).resize((size, size), Image.BICUBIC)
    return to_pixels(image), source


def timing(data: Path) -> tuple[list, float]:
    import torch

    sys.path.insert(0, str(REPO / "plugins"))
    from ptcli_super_resolve.models import build_rrdbnet
    from ptcli_super_resolve.tiling import upscale

    torch.manual_seed(0)
    bare = build_rrdbnet(scale=4, num_feat=32, num_block=6, num_grow_ch=16).eval()
    ours = build_rrdbnet(scale=4, num_feat=32, num_block=6, num_grow_ch=16).eval()
    ours.load_state_dict(bare.state_dict())
    ours = ours.to(memory_format=torch.channels_last)
    image, source = photo(data, 512)
    device = torch.device("cpu")

    def run_bare():
        with torch.inference_mode():
            return bare(image[None])[0]

    def run(tile):
        return upscale(image, ours, scale=4, tile=tile, overlap=16, device=device)

    reference = run_bare()
    difference = float((run(256) - reference).abs().max())
    times = {"bare untiled": [], "ptcli tiled 256": [], "ptcli untiled": []}
    for _ in range(3):
        for name, call in (("bare untiled", run_bare), ("ptcli tiled 256", lambda: run(256)), ("ptcli untiled", lambda: run(None))):
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    rows = [("photo", f"{source.name}, 512x512 -> 2048x2048"), ("model", "RRDBNet 6 blocks x 32 features (random)"),
            ("threads", str(torch.get_num_threads()))]
    rows += [(name, f"{seconds:.2f} s") for name, seconds in medians.items()]
    rows.append(("tiled against bare, max abs difference", f"{difference:.2e} (the blend of overlapping tiles)"))
    return rows, medians["bare untiled"] / medians["ptcli tiled 256"]


def memory_child(output: Path, tile: int) -> None:
    import torch

    sys.path.insert(0, str(REPO / "plugins"))
    from ptcli_super_resolve.images import write
    from ptcli_super_resolve.models import build_rrdbnet
    from ptcli_super_resolve.tiling import tile_count, upscale

    torch.manual_seed(0)
    net = build_rrdbnet(scale=4).eval().to(memory_format=torch.channels_last)  # 23 blocks x 64
    image = torch.rand(3, 2048, 2048)
    by_shape, computed = {}, []

    def model(x):
        key = tuple(x.shape)
        if key not in by_shape:
            start = time.perf_counter()
            by_shape[key] = net(x)
            computed.append(time.perf_counter() - start)
        return by_shape[key]

    start = time.perf_counter()
    result = upscale(image, model, scale=4, tile=tile, overlap=16, device=torch.device("cpu"))
    write(output, result, None, grey=False, bits=8)
    # VmHWM, this process's own peak: ru_maxrss would carry over the parent's from before exec.
    status = Path("/proc/self/status").read_text()
    peak = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 2**20  # kB
    print(f"{peak:.3f} {len(computed)} {tile_count(2048, 2048, tile, 16)} {statistics.mean(computed):.1f} {time.perf_counter() - start:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-tiles", type=int, nargs="+", default=[128, 256], help="tile sizes of the memory runs")
    parser.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tile", type=int, default=256, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.tile)
        return
    rows, ratio = timing(args.data)
    for tile in [] if args.skip_memory else args.memory_tiles:
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run([sys.executable, __file__, "--memory-child", str(Path(tmp) / "out.png"), "--tile", str(tile)],
                                  capture_output=True, text=True, check=True)
        peak, computed, total, per_tile, seconds = done.stdout.split()
        rows.append((f"2048x2048 x4, 23-block RRDBNet, --tile {tile}: peak memory",
                     f"{float(peak):.2f} GB (goal < {LIMIT_GB:g}): {'OK' if float(peak) < LIMIT_GB else 'MISSED'}"))
        record(f"super-resolve 2048x2048 x4 peak memory, --tile {tile}", f"{float(peak):.2f} GB", "", None, f"< {LIMIT_GB:g} GB",
               float(peak) < LIMIT_GB)
        rows.append(("  tiles computed / in the run", f"{computed} / {total} ({float(per_tile):.1f} s a tile; {seconds} s in all)"))
    report(rows, ratio, TARGET, figure="super-resolve tiled 256 speed / bare untiled")


if __name__ == "__main__":
    main()
