"""Handwritten digits that ../shared/data/imagefolder_digits does not hold, in its layout
(ImageFolder, 32x32 RGB PNG), for judging a model on data nothing was tuned on. The shared
set takes the first 40 of each class in a seeded shuffle of scikit-learn's digits
(make_data.py); these are drawn, with another seed, from the rest.

    python bench/unseen_digits.py OUT [--seed 7] [--per-class 40] [--exclude ANOTHER_SET]
"""

import argparse
import random
from pathlib import Path

#: make_data.py's seed and the number of each class it uses (20 train + 20 val).
SHARED_SEED, SHARED_PER_CLASS = 20240611, 40


def write_unseen(out: Path, seed: int = 7, per_class: int = 40, split: str = "val", exclude: Path | None = None) -> Path:
    """``out/split/<digit>/NNNN.png``: ``per_class`` digits of each class, none of them in the
    shared set nor (by their index, the file name) in ``exclude``."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    shared = random.Random(f"{SHARED_SEED}-digits")
    mine = random.Random(seed)
    for label in range(10):
        idx = [i for i, t in enumerate(digits.target) if t == label]
        shared.shuffle(idx)  # the same draw as make_data.py, so that its choice is known
        taken = {int(f.stem) for f in exclude.rglob("*.png")} if exclude is not None else set()
        rest = [i for i in idx[SHARED_PER_CLASS:] if i not in taken]
        mine.shuffle(rest)
        folder = out / split / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        for i in sorted(rest[:per_class]):
            pixels = (digits.images[i] * (255.0 / 16.0)).round().astype(np.uint8)
            Image.fromarray(pixels, "L").resize((32, 32), Image.BILINEAR).convert("RGB").save(folder / f"{i:04d}.png")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--exclude", type=Path, help="another such set: none of its digits are drawn again")
    args = parser.parse_args()
    print(write_unseen(args.out, args.seed, args.per_class, exclude=args.exclude))


if __name__ == "__main__":
    main()
