"""A small RRDBNet trained with recipes/esrgan-psnr.yaml for a few minutes on the CPU, on the
real photos of ../shared/data/superres, scored on its held-out images (the recipe's seeded
validation split) against bicubic: PSNR and SSIM on the Y channel, through `ptcli eval`.

    python bench/sr_train.py [--data ../shared/data] [--epochs 40]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ["model.num_block=2", "model.num_feat=32", "model.num_grow_ch=16", "data.crop=64", "data.repeat=32",
            "trainer.batch_size=8", "trainer.lr=0.001", "loss.ema=0", "trainer.device=cpu", "run.tensorboard=false"]


def ptcli(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "ptcli", *args, "--json"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"ptcli {args[0]} failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def held_out(root: Path, folder: Path) -> list[str]:
    """The recipe's validation images, linked into ``folder`` (hr/ and lr_x4/)."""
    sys.path.insert(0, str(REPO / "plugins"))
    from ptcli_super_resolve.srdata import pairs, split

    _, val = split(pairs(root / "hr", root / "lr_x4"), 0.2, 0)
    for sub in ("hr", "lr_x4"):
        (folder / sub).mkdir(parents=True)
    for hr, lr in val:
        (folder / "hr" / hr.name).symlink_to(hr)
        (folder / "lr_x4" / lr.name).symlink_to(lr)
    return [hr.name for hr, _ in val]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    root = args.data / "superres"
    if not (root / "hr").is_dir():
        sys.exit(f"benchmark data not found: {root} (see ../shared/data/README.md)")
    with tempfile.TemporaryDirectory() as tmp:
        names = held_out(root, Path(tmp) / "val")
        start = time.perf_counter()
        summary = ptcli("train", str(REPO / "recipes" / "esrgan-psnr.yaml"), f"data.root={root}", *SETTINGS,
                        f"trainer.epochs={args.epochs}", f"run.dir={tmp}/runs")
        seconds = time.perf_counter() - start
        report = ptcli("eval", summary["best_checkpoint"], f"{tmp}/val", "--device", "cpu")
    print(f"RRDBNet 2 blocks x 32, x4, {args.epochs} epochs on CPU in {seconds:.0f} s; held out: {', '.join(names)}")
    print(f"model    PSNR {report['psnr']:.2f} dB  SSIM {report['ssim']:.4f}")
    print(f"bicubic  PSNR {report['bicubic_psnr']:.2f} dB  SSIM {report['bicubic_ssim']:.4f}")
    print(f"difference {report['psnr'] - report['bicubic_psnr']:+.2f} dB (model - bicubic)")


if __name__ == "__main__":
    main()
