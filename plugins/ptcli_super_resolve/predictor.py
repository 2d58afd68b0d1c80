"""super-resolve's inference contract: an image (a file or an upload) upscaled tile by tile,
its tiles the contract's chunks (each kept to its own cell by merge; sized from free device memory and halved
on out-of-memory with ``tile "auto"``), resized to ``scale`` when it differs from the model's,
greyscale, alpha and 16 bits kept. Each result carries its image file (a PNG, or the format
``ext`` names), which the core writes to -o DIR (the command) or sends (`ptcli serve`)."""

from __future__ import annotations

from ptcli.inference.contract import IMAGE, Predictor, Sample, Source, sample_image_bytes
from ptcli.inference.options import Option

#: Media types of the formats super-resolve writes, by file ending.
MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
               ".tif": "image/tiff", ".tiff": "image/tiff", ".bmp": "image/bmp"}


class Upscaler(Predictor):
    kind = IMAGE
    collate = "list"
    media_type = "image/png"
    options = (
        Option("scale", float, None, "Output scale, when it differs from the model's (resized after) [default: the "
               "model's].", min=0.1, optional=True, metavar="S"),
        Option("tile", str, "auto", "Tile size in input pixels; auto: from free device memory, halved on "
               "out-of-memory.", metavar="N|auto|none"),
        Option("tile_overlap", int, 16, "Overlap between tiles, in input pixels (blended).", min=0, metavar="N"),
        Option("bf16", bool, False, "Compute in bfloat16 (fast on GPUs with bf16 units and on CPUs with AMX; fp32 "
               "range, so no overflow)."),
        Option("half", bool, False, "fp16 on CUDA (about twice as fast; not on the CPU)."),
        Option("ext", str, None, "Output format by file ending: png (default), jpg, webp, tif.", optional=True,
               metavar="EXT"),
        Option("suffix", str, None, "Added to each output name [default: _x<scale>].", optional=True, metavar="TEXT"),
    )
    # One image at a time, read in this process: a large image's result needs the memory.
    writes, default_output, default_batch_size, default_workers = "_x4", ".", 1, 0
    progress = "upscaling"

    def __init__(self, net, native: int, device, *, scale: float | None = None, tile="auto", tile_overlap: int = 16,
                 dtype=None, ext: str | None = None, suffix: str | None = None, title: str = "") -> None:
        import torch

        from .outputs import output_extension

        # channels_last: RRDBNet runs 1.5-1.9x faster on 2 CPU cores so (bench/sr_tiling.py), and
        # it is the layout cuDNN's fp16/bf16 convolutions prefer.
        net = net.to(device).eval().to(memory_format=torch.channels_last)
        self.net = net.to(dtype) if dtype is not None else net
        self.native, self.device, self.dtype, self.title = native, device, dtype, title
        self.factor = scale or native
        self.tile, self.tile_overlap = tile, tile_overlap
        self.file_ending = output_extension(ext)
        self.suffix = suffix if suffix is not None else f"_x{self.factor:g}"

    @classmethod
    def check_options(cls, options: dict) -> None:
        from ptcli.errors import UsageError

        from .outputs import output_extension, tile_setting

        tile_setting(options.get("tile", "auto"))
        output_extension(options.get("ext"))
        if options.get("half") and options.get("bf16"):
            raise UsageError("--half and --bf16 are two precisions; pick one")

    @classmethod
    def load(cls, source: Source, device, *, scale=None, tile="auto", tile_overlap=16, bf16=False, half=False, ext=None,
             suffix=None, dtype=None) -> Upscaler:
        import torch

        from ptcli.errors import UsageError

        from .models import DEFAULT_MODEL, load_upscaler
        from .outputs import tile_setting

        if half and device.type != "cuda":
            raise UsageError(f"--half needs a CUDA device; {device} computes in fp32")
        if dtype is None and (half or bf16):
            dtype = torch.float16 if half else torch.bfloat16
        net, native, name = load_upscaler(source.model, source.weights, source.checkpoint)
        upscaler = cls(net, native, device, scale=scale, tile=tile_setting(tile), tile_overlap=tile_overlap, dtype=dtype,
                       ext=ext, suffix=suffix, title=f"super-resolve ({source.describe(DEFAULT_MODEL)})")
        upscaler.name = name  # what the model was loaded from: a name, a weights file or a checkpoint
        return upscaler

    def file_suffix(self) -> str:
        return self.suffix

    def evaluate(self, data, *, batch_size: int) -> dict:
        """PSNR and SSIM (Y channel) on an HR folder (with its paired LR, else bicubic-downscaled),
        beside bicubic upscaling's, by the model as loaded."""
        from .evaluation import evaluate_upscaler

        return evaluate_upscaler(self.net, self.native, data, device=self.device, checkpoint=self.source.describe())

    def format_evaluation(self, report: dict) -> str:
        from .evaluation import format_report

        return format_report(report)

    def describe(self, item, result: dict) -> str:
        size = f"{result['size'][0]}x{result['size'][1]}"
        return f"{item} -> {result['output']} ({size}" + (f", {result['seconds']:.1f} s)" if "seconds" in result else ")")

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return round(width * self.factor), round(height * self.factor)

    def decode(self, item) -> Sample:
        """The image, refused before any work when its result would not fit in memory."""
        import time

        from .images import SRImages
        from .outputs import check_output_fits

        meta = {"start": time.perf_counter()}
        image = SRImages().read(item)
        image.name = "the upload" if isinstance(item, (bytes, bytearray)) else str(item)
        width, height = image.size
        size = self.output_size(width, height)
        check_output_fits((max(size[0], width * self.native), max(size[1], height * self.native)))
        return Sample(image, meta)

    def preprocess(self, images: list) -> list:
        return list(images)  # SRImages stay on the CPU: only tiles go to the device

    # --- tiles as chunks: the core batches them through forward, merge keeps each one's own cell ------

    chunked = True
    chunk_batch = 1  # one tile a pass: on 2 CPU cores larger batches gain nothing and cost memory

    def chunks(self, image) -> list:
        """The image's padded tiles (its tile size: ``tile_px`` when the command set one, else
        the setting, sized from free memory for "auto"); the grid is kept on the image for merge."""
        from .tiling import auto_tile, crops, grid

        height, width = image.rgb.shape[1:]
        tile = getattr(image, "tile_px", None) or (auto_tile(self.device, height, width) if self.tile == "auto" else self.tile)
        image.tile_px, image.grid = tile, grid(height, width, tile, self.tile_overlap)
        return crops(image.rgb, *image.grid)

    def forward(self, tiles: list) -> list:
        """A pass of same-size tiles (CHW, on the CPU) to their upscaled CHW results on the CPU."""
        import torch

        from .tiling import _forward

        batch = torch.stack(tiles).to(self.device, dtype=self.dtype)
        return list(_forward(self.net, batch, self.native).float().cpu())

    def merge(self, image, outputs):
        """The tiles' results (each its own cell, the padding dropped) as the upscaled image, resized to the output size,
        with the image (its alpha, mode and depth) for postprocess. Out of memory with ``tile
        "auto"``: again with tiles half the size, down to 16 pixels."""
        import torch

        from .images import resize
        from .tiling import stitch

        rows, cols = image.grid
        try:
            result = next(iter(outputs)) if len(rows) == len(cols) == 1 else \
                stitch(tuple(image.rgb.shape), rows, cols, scale=self.native, tile=image.tile_px, results=outputs)
        except torch.OutOfMemoryError as exc:
            return self._smaller_tiles(image, exc)
        size = self.output_size(*image.size)
        if result.shape[2] != size[0] or result.shape[1] != size[1]:
            result = resize(result, size)
        return result, image

    def _smaller_tiles(self, image, exc):
        import torch

        from ptcli.errors import PtcliError

        current = getattr(image, "tile_px", None) or max(image.size)
        if self.tile != "auto" or current <= 16:
            raise PtcliError(f"{image.name}: out of {self.device} memory with tiles of {current} px; "
                             "use a smaller --tile, or --tile auto") from exc
        image.tile_px = current // 2
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return self.merge(image, (out for tile in self.chunks(image) for out in self.forward([tile])))

    def alpha(self, image):
        from .images import resize

        return resize(image.alpha, self.output_size(*image.size)) if image.alpha is not None else None

    def postprocess(self, row, meta) -> dict:
        """The upscaled image as a file in the format asked for (PNG when serving), and, when
        the core writes it (the command), how long it took."""
        import time

        from ptcli.inference.results import Artifact

        from .images import encoded

        rgb, image = row
        size = [int(rgb.shape[2]), int(rgb.shape[1])]
        ending = self.file_ending if self.writing else ".png"
        data = Artifact(encoded(rgb, self.alpha(image), ending, grey=image.grey, bits=image.bits), MEDIA_TYPES[ending])
        fields = {"size": size, "scale": self.factor}
        if self.writing:
            fields["seconds"] = round(time.perf_counter() - meta["start"], 3)
        return {**fields, "png": data}

    def encode(self, result: dict) -> bytes:
        return result["png"]

    def warmup(self):
        import io

        from PIL import Image

        buffer = io.BytesIO()  # a small one: a large model takes seconds a megapixel on a CPU
        Image.open(io.BytesIO(sample_image_bytes())).convert("RGB").resize((32, 32)).save(buffer, format="PNG")
        return buffer.getvalue()
