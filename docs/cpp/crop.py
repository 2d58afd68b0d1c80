"""The input crop docs/cpp/classify.cpp reads, made as ptcli makes it, from the export's own
sidecar: the short side resized to ``preprocessing.resize`` with its ``interpolation``
(Pillow's filter of that name: ptcli's own), the centre ``crop`` cut out, saved as a binary PPM.

    python crop.py lite0.pt cat.jpg crop.ppm

Other resizers drift: ImageMagick's default filter (Mitchell for enlargement, Lanczos for
reduction) moved the koala's top score from ptcli's 0.529 to 0.482; this crop gives ptcli's.
Needs only Pillow (the sidecar is read from the TorchScript archive with zipfile)."""

import json
import sys
import zipfile

from PIL import Image, ImageOps

FILTERS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def sidecar(export: str) -> dict:
    with zipfile.ZipFile(export) as archive:
        name = next(n for n in archive.namelist() if n.endswith("extra/ptcli.json"))
        return json.loads(archive.read(name))


def crop(image: Image.Image, resize: int, size: int, interpolation: str) -> Image.Image:
    width, height = image.size
    # The short side becomes `resize`; the long one is truncated, as torchvision's Resize does.
    new = (resize, int(resize * height / width)) if width <= height else (int(resize * width / height), resize)
    if new != image.size:
        image = image.resize(new, FILTERS[interpolation])
    width, height = image.size
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def main() -> None:
    export, source, target = sys.argv[1:4]
    pre = sidecar(export)["preprocessing"]
    image = ImageOps.exif_transpose(Image.open(source)).convert("RGB")
    crop(image, int(pre["resize"]), int(pre["crop"]), pre.get("interpolation", "bilinear")).save(target, format="PPM")


if __name__ == "__main__":
    main()
