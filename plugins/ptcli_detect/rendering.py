"""What `ptcli detect` shows: detections as COCO-style JSON fields, text lines, and a copy of
the image with boxes, labels, scores and masks drawn (torchvision's drawing utilities)."""

from __future__ import annotations

from .detections import Detections
from .models import Categories

#: Box colours by label (cycled): distinct on photos, readable with white text.
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
           "#469990", "#9a6324", "#800000", "#808000", "#000075", "#fabed4", "#ffd8b1", "#aaffc3")


def detection_fields(found: Detections, categories: Categories, width: int, height: int) -> list[dict]:
    """One dict per detection: label, category_id, score, bbox [x, y, w, h] in image pixels
    (COCO's convention), and "mask" as COCO RLE when there are masks. Scores keep 6 decimals:
    at 4, ties among low scores moved COCO mAP computed from this output by 0.002."""
    from .coco import rle_encode

    rows = []
    for index, (box, score, label) in enumerate(zip(found.boxes.tolist(), found.scores.tolist(), found.labels.tolist())):
        x1, y1, x2, y2 = (min(max(v, 0.0), limit) for v, limit in zip(box, (width, height, width, height)))
        row = {"label": categories.names[label], "category_id": categories.ids[label], "score": round(score, 6),
               "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]}
        if found.masks is not None:
            row["mask"] = rle_encode(found.masks[index].full(width, height))
        rows.append(row)
    return rows


def human_lines(path, result: dict) -> str:
    rows = result["detections"]
    count = f"{len(rows)} object{'s' if len(rows) != 1 else ''}"
    lines = [f"{path}: {count} ({result['width']}x{result['height']})" + (f" -> {result['output']}" if "output" in result else "")]
    names = [(f"#{r['track_id']} " if "track_id" in r else "") + r["label"] for r in rows]  # --track: the object's id first
    width = max((len(name) for name in names), default=0)
    for name, r in zip(names, rows):
        x, y, w, h = r["bbox"]
        lines.append(f"  {name:<{width}}  {r['score']:.3f}  x={x:.0f} y={y:.0f} w={w:.0f} h={h:.0f}")
    return "\n".join(lines)


def draw(image, found: Detections, categories: Categories):
    """A uint8 CHW copy of ``image`` (uint8 CHW) with masks, boxes, labels and scores drawn."""
    import torch
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    height, width = image.shape[-2:]
    colours = [PALETTE[label % len(PALETTE)] for label in found.labels.tolist()]
    if found.masks:
        for mask, colour in zip(found.masks, colours):  # one at a time: a full-size mask each
            image = draw_segmentation_masks(image, mask.full(width, height)[None], alpha=0.45, colors=colour)
    if len(found):
        labels = [f"{categories.names[label]} {score:.2f}" for label, score in zip(found.labels.tolist(), found.scores.tolist())]
        boxes = found.boxes.clone()
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width - 1)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height - 1)
        image = draw_bounding_boxes(image, boxes, labels=labels, colors=colours, width=max(2, round(min(width, height) / 300)))
    return image.to(torch.uint8)



class VideoDrawing:
    """A video frame with its detections drawn: boxes, labels and scores, and with tracking
    each object's id and the trail of its last ``trail`` centres, in a colour per track."""

    def __init__(self, trail: int = 30) -> None:
        self.trail = trail
        self.trails: dict[int, list[tuple[float, float]]] = {}

    def start(self) -> None:
        """A new video: its track ids are new objects."""
        self.trails = {}

    def __call__(self, image, result: dict):
        from PIL import ImageDraw

        picture = image.copy()
        pen = ImageDraw.Draw(picture)
        width = max(2, round(min(picture.size) / 300))
        seen = set()
        for row in result["detections"]:
            x, y, w, h = row["bbox"]
            track = row.get("track_id")
            colour = PALETTE[(track if track is not None else row.get("category_id", 0)) % len(PALETTE)]
            pen.rectangle([x, y, x + w, y + h], outline=colour, width=width)
            text = f"{'#' + str(track) + ' ' if track is not None else ''}{row['label']} {row['score']:.2f}"
            left, top, right, bottom = pen.textbbox((x, y), text)
            lift = bottom - top + 2
            pen.rectangle([x, max(0, y - lift), x + (right - left) + 4, max(lift, y)], fill=colour)
            pen.text((x + 2, max(0, y - lift)), text, fill="white")
            if track is not None:
                seen.add(track)
                points = self.trails.setdefault(track, [])
                points.append((x + w / 2, y + h / 2))
                del points[:-self.trail]
                if len(points) > 1:
                    pen.line(points, fill=colour, width=width)
        for track in [t for t in self.trails if t not in seen and len(self.trails[t]) > 0]:
            self.trails[track].pop(0)  # a lost object's trail fades out
            if not self.trails[track]:
                del self.trails[track]
        return picture
