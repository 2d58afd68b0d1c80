"""One image file attacked in its own pixels and saved losslessly, then checked the way
`ptcli classify-image` reads it."""

from __future__ import annotations


def attack_image(classifier, item, settings, target_index: int | None, device, on_step=None) -> tuple[bytes, dict]:
    """(the adversarial image as PNG bytes, its fields) for one image (a path or bytes): the
    clean prediction, the attack in the image's own pixels, and the prediction of what the PNG
    holds, read back as `ptcli classify-image` would read the file."""
    import io

    import torch
    from PIL import Image

    from ptcli.vision.imaging import to_pixels

    original = to_pixels(classifier.read(item))
    clean_index, clean_score = classifier.predict_file(item)
    targeted = target_index is not None
    label = torch.tensor([target_index if targeted else clean_index], device=device)
    x = original[None].to(device)
    details: dict = {}
    # Square only queries: it asks the saved file's own reading where the classifier has one,
    # so that it goes on until what it finds survives Pillow's resize and the 8-bit PNG (the
    # differentiable resize agrees to about a grey level, and Square stops at the barest margin).
    as_read = getattr(classifier, "as_read", None) if settings.method == "square" else None
    model = as_read() if as_read is not None else classifier.pipeline()
    adversarial = settings.run(model, x, label, targeted=targeted, quantize=True, on_step=on_step, record=details)[0]
    pixels = (adversarial.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    png = buffer.getvalue()
    saved = to_pixels(classifier.read(png))  # what the file holds, measured there
    delta = (saved - original).flatten()
    index, score = classifier.predict_file(png)
    success = index == target_index if targeted else index != clean_index
    fields = {"clean": {"label": classifier.labels[clean_index], "score": round(clean_score, 6)},
              "adversarial": {"label": classifier.labels[index], "score": round(score, 6)},
              "success": bool(success), "linf": round(float(delta.abs().max()), 6), "l2": round(float(delta.norm()), 6)}
    if "queries" in details:  # a black-box attack: the model calls it spent on this image
        fields["queries"] = int(details["queries"][0])
    return png, fields
