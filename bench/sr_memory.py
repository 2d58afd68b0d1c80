"""Peak memory and time of x4 super-resolution on the CPU with a full-size RRDBNet (23 blocks,
random weights): `ptcli super-resolve --tile 256` against the same model run untiled (the
baseline; basicsr has no tiled upsampler of its own). Each side runs in its own process and
its peak resident memory is read from the OS. Targets: tiled peak under 2 GB, and no slower
than untiled.

The issue's case is a 2048x2048 input: about 70 TMAC, most of an hour on 2 CPU cores, and an
untiled run would need tens of GB. --size picks a smaller square (default 256) for a quick run.

    python bench/sr_memory.py [--size 256] [--blocks 23] [--tile 256]
"""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(args) -> None:
    """The untiled baseline in this (child) process."""
    import torch

    sys.path.insert(0, str(REPO / "plugins"))
    from ptcli.checkpoints import load_state_dict
    from ptcli_super_resolve.images import SRImages, write
    from ptcli_super_resolve.models import build_rrdbnet, rrdbnet_args

    state = load_state_dict(args.weights)
    model = build_rrdbnet(**rrdbnet_args(state))
    model.load_state_dict(state)
    image = SRImages().read(args.image)
    with torch.inference_mode():
        out = model.eval()(image.rgb[None])[0]
    write(args.output, out, None, grey=False, bits=8)


def measure(command: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in GB) of a command run to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command[:4])}...: {done.stderr.strip()[-300:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        print("note: this process's earlier child used more memory; run the sides separately for exact figures")
    return seconds, peak / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--blocks", type=int, default=23)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--image", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    import numpy as np
    import torch
    from PIL import Image

    sys.path.insert(0, str(REPO / "plugins"))
    from ptcli_super_resolve.models import build_rrdbnet

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        weights = tmp / "rrdbnet.pth"
        torch.save(build_rrdbnet(num_block=args.blocks).state_dict(), weights)
        image = tmp / "input.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)).save(image)
        # Untiled first: ru_maxrss of children is a running maximum, so the smaller run goes first.
        tiled_cmd = [sys.executable, "-m", "ptcli", "super-resolve", str(image), "--weights", str(weights), "-o", str(tmp),
                     "--tile", str(args.tile), "--device", "cpu", "--suffix", "_tiled", "--json"]
        base_cmd = [sys.executable, __file__, "--child", "--weights", str(weights), "--image", str(image),
                    "--output", str(tmp / "untiled.png")]
        tiled_s, tiled_gb = measure(tiled_cmd)
        base_s, base_gb = measure(base_cmd)
    print(f"input {args.size}x{args.size}, x4, RRDBNet {args.blocks} blocks, CPU, {torch.get_num_threads()} threads")
    print(f"ptcli --tile {args.tile}  {tiled_s:7.1f} s   peak {tiled_gb:.2f} GB")
    print(f"untiled            {base_s:7.1f} s   peak {base_gb:.2f} GB (a running maximum: at least the tiled figure)")
    ratio = base_s / tiled_s
    print(f"ratio {ratio:.3g} (untiled time / tiled time, ptcli's start-up included; target >= 1.0 with a tiled "
          f"peak under 2 GB): {'OK' if tiled_gb < 2 and ratio >= 1.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
