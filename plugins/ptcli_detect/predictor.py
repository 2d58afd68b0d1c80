"""detect's inference contract: an image (a file or an upload) through the detector; each
result is its size and detections (COCO boxes, and masks as RLE), and, when the core writes
them (-o), the drawing as a PNG. With ``slice_size`` an image is chunked into overlapping tiles plus the whole
image, which the core batches through ``forward`` and ``merge`` joins again. The command (derived
by the core: ptcli.cli.derived) and `ptcli serve` both run this; the command's own options
follow a video's objects (``track``, ptcli_detect.tracking) and write their tracks (``mot``)."""

from __future__ import annotations

from pathlib import Path

from ptcli.inference.contract import IMAGE, CommandRun, Predictor, Sample, Source, sample_image_bytes
from ptcli.inference.options import Option, Options

from .tracking import TRACKERS, detector_threshold


def parse_classes(value: str | None) -> list[str] | None:
    from ptcli.errors import UsageError

    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise UsageError("--classes needs at least one class name (comma-separated)")
    return names


class Detector(Predictor):
    kind = IMAGE
    collate = "list"
    default_batch_size = None  # batch_size_for the device
    progress = "detecting"
    failed = "could not be read"
    writes = "_detect"
    written = "the drawn images and videos"
    options = (
        Option("threshold", float, 0.5, "Lowest score reported.", min=0.0, max=1.0, request=True, metavar="P"),
        Option("classes", str, None, "Report only these classes (names, comma-separated).", optional=True,
               metavar="A,B"),
        Option("max_detections", int, 100, "Most detections per image.", min=1, request=True, metavar="N"),
        Option("masks", bool, None, "Instance masks (COCO RLE in --json, drawn with -o) [default: when the model has "
               "them].", optional=True),
        Option("slice_size", int, None, "Large images: detect in N-pixel tiles (batched) plus the whole image, then "
               "merge. Finds small objects the model's resize would lose.", min=64, optional=True, flag="--slice",
               metavar="N"),
        Option("slice_overlap", float, 0.2, "Fraction of a tile its neighbours share.", min=0.0, max=0.9, metavar="F"),
        Option("slice_merge", str, "greedy", "How tiles' boxes merge: greedy (boxes overlapping by intersection over "
               "the smaller join the best one, which grows only where a tile edge cut it) or nms (IoU).",
               choices=("greedy", "nms"), metavar="greedy|nms"),
        Option("track", str, None, "Videos: follow objects from frame to frame; each detection gets a track_id (bare "
               "--track: bytetrack). The tracker is given the scores it was tuned for, whatever --threshold says "
               "(down to 0.65 for bytetrack, 0.3 for botsort, 0.6 for ocsort), and a frame reports the objects it "
               "follows, whatever their score.", choices=TRACKERS, optional=True, command_only=True, metavar="[bytetrack|botsort|ocsort]"),
        Option("mot", str, None, "With --track: also write the tracks as MOTChallenge text (frame from 1, id, x, y, "
               "w, h, score, class), for `ptcli eval FILE gt.txt`.", optional=True, command_only=True, metavar="FILE"),
    )

    def __init__(self, loaded, device, *, threshold: float = 0.5, classes: list[str] | str | None = None,
                 max_detections: int = 100, masks: bool | None = None, slice_size: int | None = None, slice_overlap: float = 0.2,
                 slice_merge: str = "greedy", track: str | None = None, mot: str | None = None, title: str = "") -> None:
        from ptcli.errors import UsageError

        from .models import configure_inference, has_masks

        net = loaded.model
        if masks and not has_masks(net):
            raise UsageError(f"{loaded.source} predicts no masks; use --model maskrcnn_resnet50_fpn_v2 or drop --masks")
        self.with_masks = has_masks(net) if masks is None else masks
        self.categories = loaded.categories
        if isinstance(classes, str):
            classes = parse_classes(classes)
        self.selected = self.categories.labels_for(classes) if classes else None
        self.threshold, self.max_detections = threshold, max_detections
        self.slice_size, self.slice_overlap, self.slice_merge = slice_size, slice_overlap, slice_merge
        self.chunked = slice_size is not None
        self.as_built = _inference_settings(net)  # what `ptcli eval` scores with (torchvision's builders: 0.05, 100)
        self.net, self.device, self.title = net.to(device).eval(), device, title
        self.option_values = Options({"threshold": threshold, "classes": classes, "max_detections": max_detections,
                                      "masks": masks, "slice_size": slice_size, "slice_overlap": slice_overlap,
                                      "slice_merge": slice_merge, "track": track, "mot": mot})
        configure_inference(net, self.score_floor(), max_detections)

    @classmethod
    def load(cls, source: Source, device, **options) -> Detector:
        from .models import DEFAULT_MODEL, load_detector

        loaded = load_detector(source.model, source.weights, source.checkpoint)
        return cls(loaded, device, title=f"detect ({source.describe(DEFAULT_MODEL)})", **options)

    @classmethod
    def batch_size_for(cls, device, run: CommandRun) -> int:
        """4 on a GPU. On the CPU a batch is slower per image than one image at a time (measured
        on 2 cores: 1.59 images/s one by one, 1.02 in batches of 4; the backbone's convolutions
        take twice as long per image in a batch of 8), so 1. With --slice it counts tiles."""
        return 4 if device.type == "cuda" else 1

    @classmethod
    def check_options(cls, options: dict) -> None:
        from ptcli.errors import UsageError

        parse_classes(options.get("classes"))
        if options.get("mot") is not None and options.get("track") is None:
            raise UsageError("--mot writes tracks: add --track")

    @classmethod
    def check_run(cls, run: CommandRun) -> None:
        from ptcli.errors import UsageError

        if run.options.get("track") is not None and (run.inputs or not run.videos):
            count = len(run.inputs)
            raise UsageError("--track follows objects through videos; give only videos "
                             f"({count} image{'s' if count != 1 else ''} given)")
        if run.options.get("mot") is not None:
            from .motfile import refuse_existing

            refuse_existing(Path(run.options["mot"]), run.overwrite)

    def score_floor(self) -> float:
        """The lowest score the model keeps: --threshold, or with --track the tracker's own."""
        values = self.option_values
        track = getattr(values, "track", None)
        return values.threshold if track is None else detector_threshold(track)

    def video_annotation(self):
        from .tracking import Tracking

        track = getattr(self.option_values, "track", None)
        return Tracking(track) if track is not None else None

    def video_drawing(self):
        from .rendering import VideoDrawing

        return VideoDrawing()  # a track's trail, over a video's frames

    def command_results(self, results, run: CommandRun):
        if run.options.get("mot") is None:
            return results
        from .motfile import write_mot

        return write_mot(results, Path(run.options["mot"]))

    def describe(self, item, result: dict) -> str:
        from .rendering import human_lines

        return human_lines(item, result)

    def decode(self, item) -> Sample:
        return DecodeImageAndSize(self.writing)(item)

    def decoder(self) -> DecodeImageAndSize:
        return DecodeImageAndSize(self.writing)

    def preprocess(self, images: list) -> list:
        from ptcli.vision.imaging import to_pixels

        return [to_pixels(image) for image in images]

    def forward(self, images: list) -> list:
        from .detections import Detections
        from .models import configure_inference, detect_by_size

        # A request may lower or raise the threshold: the model itself drops what is below it
        # (forward passes run one at a time, on the model's thread).
        configure_inference(self.net, self.score_floor(), self.option_values.max_detections)
        # On the CPU one image a pass: a batch is slower per image there on few cores (see
        # batch_size_for). Elsewhere batches of one size: padding to the batch's
        # largest image moves the others' boxes and scores.
        outputs = [self.net([image])[0] for image in images] if self.device.type == "cpu" else detect_by_size(self.net, images)
        found = []
        for out in outputs:
            if not self.with_masks:
                out.pop("masks", None)
            found.append(Detections.from_output(out))
        return found

    # --- slices as chunks ------------------------------------------------------------------

    def chunks(self, image):
        """The image's tiles at full resolution, then (when there are several) the whole image,
        for the large objects no tile holds whole."""
        from .slicing import tile_crops

        height, width = int(image.shape[-2]), int(image.shape[-1])
        if width <= self.slice_size and height <= self.slice_size and not getattr(self, "_said_one_tile", False):
            from ptcli.output import warn

            self._said_one_tile = True  # once a run: a folder of small images would repeat it
            warn(f"an image of {width}x{height} fits in one --slice {self.slice_size} tile: slicing adds nothing "
                 f"there; slice only images several tiles wide, or give a smaller --slice")
        return tile_crops(image, self.slice_size, self.slice_overlap)[1]

    def merge(self, image, outputs: list):
        from .slicing import merge_tiles, tile_grid

        tiles = tile_grid(int(image.shape[-1]), int(image.shape[-2]), self.slice_size, self.slice_overlap)
        return merge_tiles(tiles, list(outputs), self.slice_merge)

    def postprocess(self, found, meta) -> dict:
        from .rendering import detection_fields

        width, height = meta["width"], meta["height"]
        found = found.filtered(self.score_floor(), self.selected, self.option_values.max_detections)
        fields = {"width": width, "height": height,
                  "detections": detection_fields(found, self.categories, width, height)}
        if "image" in meta:
            fields["png"] = self._drawing(meta["image"], found)
        return fields

    def _drawing(self, image, found):
        """The image with its detections drawn, as the PNG the core writes (-o)."""
        import io

        import numpy as np
        import torch
        from PIL import Image

        from ptcli.inference.results import Artifact

        from .rendering import draw

        pixels = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)
        drawn = draw(pixels, found, self.categories)
        buffer = io.BytesIO()
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
        return Artifact(buffer.getvalue(), "image/png")

    def evaluate(self, data, *, batch_size: int) -> dict:
        """COCO mAP on a folder with images/ and val.json (else annotations.json), or a COCO
        file, by the model as loaded, with the scores its builder keeps (not --threshold)."""
        from .evaluation import evaluate_detector
        from .models import configure_inference

        configure_inference(self.net, *self.as_built)
        try:
            return evaluate_detector(self.net, self.categories, data, device=self.device, batch_size=batch_size,
                                     checkpoint=self.source.describe())
        finally:
            configure_inference(self.net, self.score_floor(), self.option_values.max_detections)

    def format_evaluation(self, report: dict) -> str:
        from .evaluation import format_report

        return format_report(report)

    def render(self, image, result: dict):
        from .rendering import VideoDrawing

        return VideoDrawing()(image, result)

    def warmup(self):
        return sample_image_bytes()


def _inference_settings(net) -> tuple[float, int]:
    """The score threshold and detections per image a detector was built with."""
    owner = getattr(net, "roi_heads", None) or net
    return float(getattr(owner, "score_thresh", 0.05)), int(getattr(owner, "detections_per_img", 100))


class DecodeImageAndSize:
    """The image, and its size for postprocess; the image kept for postprocess to draw on when
    the core writes the drawings (-o). It needs nothing of the model."""

    def __init__(self, writing: bool) -> None:
        self.writing = writing

    def __call__(self, item) -> Sample:
        from ptcli.video.frames import Frame
        from ptcli.vision.imaging import read_image

        image = read_image(item)
        meta = {"width": image.width, "height": image.height, "path": None if isinstance(item, bytes) else item}
        if self.writing and not isinstance(item, Frame):  # a video's frames are drawn by render
            meta["image"] = image
        return Sample(image, meta)
