"""A class activation map drawn over the original image, with its colour scale."""

from __future__ import annotations




def heat_on_original(heat, region: tuple[float, float, float, float], width: int, height: int):
    """The map (h, w), which covers ``region`` (x, y, w, h) of the image, on the whole image
    (height, width); zero outside the region, which the model did not see."""
    import torch
    import torch.nn.functional as F

    x, y, w, h = region
    size = (max(1, round(h)), max(1, round(w)))
    scaled = F.interpolate(heat[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    canvas = torch.zeros((height, width))
    x0, y0 = round(x), round(y)
    xs, ys = max(x0, 0), max(y0, 0)
    xe, ye = min(x0 + size[1], width), min(y0 + size[0], height)
    canvas[ys:ye, xs:xe] = scaled[ys - y0: ye - y0, xs - x0: xe - x0]
    return canvas


def render(image, heat):
    """The image with the map blended over it (jet colours) and a colour scale at the right."""
    import numpy as np
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    jet = colormaps["jet"]
    colours = (jet(heat.numpy())[..., :3] * 255).astype(np.float32)
    base = np.asarray(image, dtype=np.float32)
    weight = 0.25 + 0.35 * heat.numpy()[..., None]  # the strong parts show most
    blended = Image.fromarray(((1 - weight) * base + weight * colours).clip(0, 255).astype(np.uint8))
    bar_w, margin = max(8, image.width // 40), max(4, image.width // 80)
    bar_h = max(16, image.height // 2)
    ramp = (jet(np.linspace(1, 0, bar_h))[:, :3] * 255).astype(np.uint8)
    bar = Image.fromarray(np.repeat(ramp[:, None, :], bar_w, axis=1))
    left, top = image.width - bar_w - margin, margin
    blended.paste(bar, (left, top))
    pen = ImageDraw.Draw(blended)
    pen.rectangle([left - 1, top - 1, left + bar_w, top + bar_h], outline=(255, 255, 255))
    pen.text((left - 2, top + bar_h + 2), "0", fill=(255, 255, 255), anchor="ra" if hasattr(pen, "textbbox") else None)
    pen.text((left - 2, top), "1", fill=(255, 255, 255), anchor="ra" if hasattr(pen, "textbbox") else None)
    return blended


def explain_image(classifier, image, index: int | None, *, method: str, layer: str | None):
    """(the overlay as a PIL image, its fields: label, score, layer) for one RGB PIL image."""
    from .cam import activation_map

    network = classifier.network()
    device = next(network.parameters()).device
    pixels = classifier.model_input(image)[None].to(device)
    heat, chosen, score, name = activation_map(network, classifier.net, pixels, index, method=method, layer=layer)
    full = heat_on_original(heat.cpu(), classifier.input_region(image.width, image.height), image.width, image.height)
    return render(image, full), {"label": classifier.labels[chosen], "score": round(score, 6), "layer": name}
