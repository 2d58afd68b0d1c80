"""super-resolve's inference contract: an image (a file or an upload) upscaled tile by tile
(cross-faded tiles, sized from free device memory and halved on out-of-memory with ``tile
"auto"``), resized to ``scale`` when it differs from the model's, greyscale, alpha and 16 bits
kept. The command writes each result to a file; `ptcli serve` answers with the PNG (``encode``),
the same pixels."""

from __future__ import annotations

from ptcli.inference.contract import IMAGE, Predictor, Sample, Source, sample_image_bytes


class Upscaler(Predictor):
    kind = IMAGE
    collate = "list"
    media_type = "image/png"

    def __init__(self, net, native: int, device, *, scale: float | None = None, tile="auto", tile_overlap: int = 16,
                 dtype=None, title: str = "") -> None:
        import torch

        # channels_last: RRDBNet runs 1.5-1.9x faster on 2 CPU cores so (bench/sr_tiling.py), and
        # it is the layout cuDNN's fp16/bf16 convolutions prefer.
        net = net.to(device).eval().to(memory_format=torch.channels_last)
        self.net = net.to(dtype) if dtype is not None else net
        self.native, self.device, self.dtype, self.title = native, device, dtype, title
        self.factor = scale or native
        self.tile, self.tile_overlap = tile, tile_overlap

    @classmethod
    def load(cls, source: Source, device, **options) -> Upscaler:
        from .models import DEFAULT_MODEL, load_upscaler

        net, native, name = load_upscaler(source.model, source.weights, source.checkpoint)
        upscaler = cls(net, native, device, title=f"super-resolve ({source.describe(DEFAULT_MODEL)})", **options)
        upscaler.name = name  # what the model was loaded from: a name, a weights file or a checkpoint
        return upscaler

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return round(width * self.factor), round(height * self.factor)

    def decode(self, item) -> Sample:
        from .images import SRImages

        return Sample(SRImages().read(item))

    def preprocess(self, images: list) -> list:
        return list(images)  # SRImages stay on the CPU: only one tile at a time goes to the device

    def forward(self, images: list) -> list:
        return [(self.upscale(image), image) for image in images]

    def upscale(self, image, progress=None, name: str = "image"):
        """The SRImage's RGB upscaled and resized to the output size (a CHW float tensor).
        ``progress(total)`` returns a callback for each tile done (a progress bar's)."""
        import torch

        from ptcli.errors import PtcliError

        from .command import check_output_fits
        from .images import resize
        from .tiling import auto_tile, tile_count, upscale

        width, height = image.size
        size = self.output_size(width, height)
        check_output_fits((max(size[0], width * self.native), max(size[1], height * self.native)))
        tile_px = auto_tile(self.device, height, width) if self.tile == "auto" else self.tile
        while True:
            on_tile = progress(tile_count(height, width, tile_px, self.tile_overlap)) if progress else None
            try:
                result = upscale(image.rgb, self.net, scale=self.native, tile=tile_px, overlap=self.tile_overlap,
                                 device=self.device, dtype=self.dtype, on_tile=on_tile)
                break
            except torch.OutOfMemoryError as exc:
                current = tile_px or max(width, height)
                if self.tile != "auto" or current <= 16:
                    raise PtcliError(f"{name}: out of {self.device} memory with tiles of {current} px; "
                                     "use a smaller --tile, or --tile auto") from exc
                tile_px = current // 2
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
        if result.shape[2] != size[0] or result.shape[1] != size[1]:
            result = resize(result, size)
        return result

    def alpha(self, image):
        from .images import resize

        return resize(image.alpha, self.output_size(*image.size)) if image.alpha is not None else None

    def postprocess(self, row, meta) -> dict:
        from .images import png_bytes

        rgb, image = row
        png = png_bytes(rgb, self.alpha(image), grey=image.grey, bits=image.bits)
        return {"size": [int(rgb.shape[2]), int(rgb.shape[1])], "scale": self.factor, "png": png}

    def encode(self, result: dict) -> bytes:
        return result["png"]

    def warmup(self):
        import io

        from PIL import Image

        buffer = io.BytesIO()  # a small one: a large model takes seconds a megapixel on a CPU
        Image.open(io.BytesIO(sample_image_bytes())).convert("RGB").resize((32, 32)).save(buffer, format="PNG")
        return buffer.getvalue()
