"""Eager against each export format, on the CPU, at batch 1 and 16: latency (median ms per
batch) and throughput (inputs/s), for classify-image (EfficientNet-Lite0, the real weights)
and super-resolve (an RRDBNet of 4 blocks, 32 features, from a config, on 64x64 patches).
Goal: onnxruntime's batch-1 latency <= 0.7x eager's for classify-image.

Each export is made by ptcli's own exporter (unchecked here: the tests check them), loaded back
as `--checkpoint FILE` loads it, and timed on the same inputs with the same threads as eager.

    python bench/export_latency.py [--repeats 20] [--device cpu]
"""

import argparse
import sys
import tempfile
from pathlib import Path

from report import report

TARGET = 0.7
FORMATS = {"onnx": ".onnx", "exported-program": ".pt2", "torchscript": ".pt"}


def timed(run, inputs, repeats: int) -> float:
    """Median ms after warm-up: the export check's own timing."""
    from ptcli.exporting.check import timed as check_timed

    return check_timed(run, inputs, repeats)[1]


def sr_checkpoint(folder: Path) -> Path:
    import torch

    from ptcli.models.checkpoints import save_checkpoint
    from ptcli_super_resolve.models import build_rrdbnet

    torch.manual_seed(0)
    model = build_rrdbnet(scale=4, num_feat=32, num_block=4, num_grow_ch=16)
    return save_checkpoint(folder / "sr", model.state_dict(), recipe="super-resolve", model="rrdbnet",
                           preprocessing={"scale": 4}, extra={"model_args": {}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    import warnings

    import torch

    from ptcli.exporting.export import export
    from ptcli.models.exported import ExportedModel
    from ptcli_classify_image.exporting import exportable as image_exportable
    from ptcli_super_resolve.exporting import exportable as sr_exportable

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    rows, onnx_ratio = [], None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = [("classify-image lite0", image_exportable(checkpoint=None, model="efficientnet_lite0", weights=None, samples=[]),
                  lambda e, n: e.sample(n)),
                 ("super-resolve rrdbnet-4x32", sr_exportable(checkpoint=sr_checkpoint(folder), model=None, weights=None, samples=[]),
                  lambda e, n: (torch.rand(n, 3, 64, 64),))]
        for name, exportable, inputs_for in cases:
            module = exportable.module.eval().to(args.device)
            loaded = {}
            for fmt, suffix in FORMATS.items():
                path = folder / f"{name.split()[0]}{suffix}"
                export(exportable, fmt, path, batch=None, half=False, opset=None, method="trace", run_check=False)
                loaded[fmt] = ExportedModel(path).to(args.device)
            for batch in (1, 16):
                inputs = tuple(t.to(args.device) for t in inputs_for(exportable, batch))
                eager = timed(module, inputs, args.repeats)
                rows.append((f"{name} batch {batch:>2} eager", f"{eager:8.1f} ms  {batch * 1000 / eager:8.1f}/s"))
                for fmt, model in loaded.items():
                    ms = timed(model, inputs, args.repeats)
                    rows.append((f"{name} batch {batch:>2} {fmt}", f"{ms:8.1f} ms  {batch * 1000 / ms:8.1f}/s  {ms / eager:5.2f}x eager"))
                    if name.startswith("classify-image") and batch == 1 and fmt == "onnx":
                        onnx_ratio, onnx_ms, eager_ms = ms / eager, ms, eager
                sys.stdout.flush()
    report(rows, onnx_ratio, TARGET, higher_is_better=False, figure="classify-image batch-1 latency, onnxruntime / eager",
           ours=f"{onnx_ms:.1f} ms", baseline=f"{eager_ms:.1f} ms")


if __name__ == "__main__":
    main()
