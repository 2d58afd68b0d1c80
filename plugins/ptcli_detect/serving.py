"""How detect serves: an uploaded image, whole (no slicing), at the command's default threshold
and detection limit; each result is the command's --json object (width, height, detections)."""

from __future__ import annotations

THRESHOLD, MAX_DETECTIONS = 0.5, 100


def servable(*, checkpoint, model, weights, device):
    import torch

    from ptcli.imaging import to_pixels
    from ptcli.serving.spec import IMAGE, Servable, image_from_bytes, sample_image

    from .detections import Detections
    from .models import DEFAULT_MODEL, configure_inference, load_detector
    from .rendering import detection_fields

    loaded = load_detector(model, weights, checkpoint)
    net, categories = loaded.model, loaded.categories
    configure_inference(net, THRESHOLD, MAX_DETECTIONS)
    net = net.to(device).eval()

    def predict(pictures: list) -> list[dict]:
        with torch.inference_mode():
            images = [to_pixels(picture).to(device) for picture in pictures]
            # On the CPU one image a pass, as detect runs there (batching is slower per image on
            # few cores, and padding to the batch's largest image moves the scores a little).
            outputs = [net([image])[0] for image in images] if device.type == "cpu" else net(images)
        results = []
        for image, out in zip(images, outputs):
            out.pop("masks", None)
            found = Detections.from_output(out).filtered(THRESHOLD, None, MAX_DETECTIONS)
            height, width = image.shape[-2:]
            results.append({"width": int(width), "height": int(height),
                            "detections": detection_fields(found, categories, int(width), int(height))})
        return results

    return Servable(kind=IMAGE, decode=image_from_bytes, predict=predict,
                    title=f"detect ({checkpoint or model or DEFAULT_MODEL})", warmup=image_from_bytes(sample_image()))
