"""Sliced detection: time per tile with the tiles batched against one tile at a time (goal
<= 0.6x), and recall with and without slices. The goal is a GPU's: on the CPU a batch of tiles
is slower per tile (the convolutions lose more to memory traffic than they gain), which is why
`ptcli detect` batches 1 tile at a time there by default.

Speed: a 2048x1536 image in 512 px tiles (overlap 0.2), through fasterrcnn_mobilenet_v3_large_fpn
with random weights (a detector's cost barely depends on its weights; no download). Recall: the
six validation images of ../shared/data/detection on a 1280 px canvas, scored with a checkpoint
of the offline recipe (bench/detect_finetune.py writes one): objects found (same class, IoU >=
0.5) by the whole canvas and by 256 px slices.

    python bench/detect_slicing.py [--checkpoint runs-bench/detect/detect-finetune/checkpoints/best.safetensors]
"""

import argparse
import json
import sys
import time
from pathlib import Path

from report import report

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
TARGET = 0.6


def per_tile_seconds(model, image, batch_size: int, rounds: int) -> float:
    import torch

    from ptcli_detect.detections import Detections
    from ptcli_detect.slicing import detect_sliced, tile_grid

    tiles = len(tile_grid(image.shape[2], image.shape[1], 512, 0.2))
    run = lambda images: [Detections.from_output(o) for o in model(images)]  # noqa: E731
    best = float("inf")
    with torch.inference_mode():
        for _ in range(rounds):
            start = time.perf_counter()
            detect_sliced(image, run, size=512, overlap=0.2, batch_size=batch_size, whole_image=False)
            best = min(best, (time.perf_counter() - start) / tiles)
    return best


def recall(checkpoint: Path, data: Path) -> tuple[int, int, int]:
    import torch
    from PIL import Image

    from ptcli_detect.detections import Detections
    from ptcli.vision.imaging import to_pixels as to_tensor
    from ptcli_detect.models import configure_inference, load_detector
    from ptcli_detect.slicing import detect_sliced

    truth = json.loads((data / "val.json").read_text())
    canvas = Image.new("RGB", (1280, 1280), (128, 128, 128))
    placed = []
    for n, entry in enumerate(truth["images"]):
        x, y = 320 * (n % 4), 640 * (n // 4)
        canvas.paste(Image.open(data / "images" / entry["file_name"]), (x, y))
        placed += [(a["category_id"], (x + a["bbox"][0], y + a["bbox"][1], x + a["bbox"][0] + a["bbox"][2], y + a["bbox"][1] + a["bbox"][3]))
                   for a in truth["annotations"] if a["image_id"] == entry["id"]]
    loaded = load_detector(None, None, checkpoint)
    configure_inference(loaded.model, 0.5, 100)
    model = loaded.model.eval()
    run = lambda images: [Detections.from_output(o) for o in model(images)]  # noqa: E731
    image = to_tensor(canvas)

    def found(detections) -> int:
        from torchvision.ops import box_iou

        detections = detections.filtered(0.5, None, 100)
        ids = [loaded.categories.ids[label] for label in detections.labels.tolist()]
        hits = 0
        for category, box in placed:
            if len(detections):
                overlaps = box_iou(torch.tensor([box], dtype=torch.float32), detections.boxes)[0]
                hits += any(o >= 0.5 and c == category for o, c in zip(overlaps.tolist(), ids))
        return hits

    with torch.inference_mode():
        whole = found(run([image])[0])
        sliced = found(detect_sliced(image, run, size=256, overlap=0.3, batch_size=8))
    return whole, sliced, len(placed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO / "runs-bench" / "detect" / "detect-finetune" / "checkpoints" / "best.safetensors")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "detection")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import torch
    import torchvision

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None).to(device).eval()
    image = torch.rand(3, 1536, 2048, generator=torch.Generator().manual_seed(0)).to(device)
    per_tile_seconds(model, image, args.batch_size, 1)  # warm-up
    one = per_tile_seconds(model, image, 1, args.rounds)
    batched = per_tile_seconds(model, image, args.batch_size, args.rounds)
    rows = [("device", str(device)), ("one tile at a time", f"{one * 1000:.1f} ms/tile"),
            (f"batched ({args.batch_size} tiles)", f"{batched * 1000:.1f} ms/tile")]
    if args.checkpoint.is_file() and (args.data / "val.json").is_file():
        whole, sliced, total = recall(args.checkpoint, args.data)
        rows += [("recall, whole image", f"{whole}/{total} = {whole / total:.2f}"),
                 ("recall, 256 px slices", f"{sliced}/{total} = {sliced / total:.2f}")]
    else:
        rows.append(("recall", f"skipped: no checkpoint at {args.checkpoint} (run bench/detect_finetune.py)"))
    report(rows, batched / one, TARGET, higher_is_better=False)


if __name__ == "__main__":
    main()
