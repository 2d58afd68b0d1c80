"""`ptcli eval` for super-resolve checkpoints: PSNR and SSIM (Y channel, full images) on an HR
folder, beside bicubic upscaling of the same LR images."""

from __future__ import annotations

from pathlib import Path

from ptcli.errors import UsageError


def _layout(data: Path, scale: int) -> tuple[Path, Path | None]:
    """(hr folder, lr folder or None): DATA/hr with DATA/lr_x<scale>, or a folder of HR images."""
    data = Path(data)
    if not data.is_dir():
        raise UsageError(f"data folder not found: {data}")
    if (data / "hr").is_dir():
        lr = data / f"lr_x{scale}"
        return data / "hr", lr if lr.is_dir() else None
    return data, None


def score(sr, hr) -> tuple[float, float]:
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    from .losses import y_channel

    a, b = y_channel(sr[None].clamp(0, 1)), y_channel(hr[None])
    return float(peak_signal_noise_ratio(a, b, data_range=1.0)), float(structural_similarity_index_measure(a, b, data_range=1.0))


def evaluate_checkpoint(checkpoint: Path, data: Path, *, device) -> dict:
    from .models import load_upscaler

    net, scale, _ = load_upscaler(None, None, checkpoint)
    return evaluate_upscaler(net.to(device).eval(), scale, data, device=device, checkpoint=checkpoint)


def evaluate_upscaler(net, scale: int, data: Path, *, device, checkpoint) -> dict:
    """The scores of ``net`` (x``scale``, on ``device``), beside bicubic's, on ``data``."""
    from ptcli.output import progress

    from .models import Bicubic
    from .srdata import _load, pairs
    from .tiling import auto_tile, upscale

    hr_dir, lr_dir = _layout(data, scale)
    rows = []
    with progress() as bar:
        items = pairs(hr_dir, lr_dir)
        task = bar.add_task("evaluating", total=len(items))
        for hr_path, lr_path in items:
            hr, lr = _load(hr_path, lr_path, scale)
            tile = auto_tile(device, lr.shape[1], lr.shape[2])
            sr = upscale(lr, net, scale=scale, tile=tile, overlap=16, device=device)
            bicubic = upscale(lr, Bicubic(scale), scale=scale, tile=None, overlap=0, device=device)
            (psnr, ssim), (b_psnr, b_ssim) = score(sr, hr), score(bicubic, hr)
            rows.append({"image": hr_path.name, "psnr": round(psnr, 3), "ssim": round(ssim, 4),
                         "bicubic_psnr": round(b_psnr, 3), "bicubic_ssim": round(b_ssim, 4)})
            bar.advance(task)
    mean = lambda key: round(sum(r[key] for r in rows) / len(rows), 4)  # noqa: E731
    return {"checkpoint": str(checkpoint), "data": str(data), "scale": scale, "lr": "paired" if lr_dir else "bicubic",
            "images": rows, "psnr": mean("psnr"), "ssim": mean("ssim"),
            "bicubic_psnr": mean("bicubic_psnr"), "bicubic_ssim": mean("bicubic_ssim")}


def format_report(report) -> str:
    width = max(len("image"), *(len(r["image"]) for r in report["images"]))
    lines = [f"{'image':<{width}}  {'PSNR':>7}  {'SSIM':>6}  {'bicubic PSNR':>12}  {'bicubic SSIM':>12}"]
    for r in report["images"]:
        lines.append(f"{r['image']:<{width}}  {r['psnr']:7.2f}  {r['ssim']:6.4f}  {r['bicubic_psnr']:12.2f}  {r['bicubic_ssim']:12.4f}")
    lines.append(f"{'mean':<{width}}  {report['psnr']:7.2f}  {report['ssim']:6.4f}  {report['bicubic_psnr']:12.2f}  {report['bicubic_ssim']:12.4f}")
    lines.append(f"(PSNR in dB and SSIM on the Y channel, x{report['scale']}, LR {report['lr']})")
    return "\n".join(lines)
