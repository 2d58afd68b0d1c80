"""How detect exports: one image (3, H, W) in [0, 1], any size, to boxes, labels and scores,
torchvision's resize and normalisation inside. torch.export (and so the dynamo ONNX
exporter) cannot follow torchvision's detectors (pytorch/vision#9306: data-dependent shapes
in NMS, RoI pooling and the resize), so ONNX goes through the TorchScript-based exporter and
TorchScript through torch.jit.script; there is no ExportedProgram."""

from __future__ import annotations

#: Baked into the export: thresholds low enough for any --threshold and --max-detections
#: that detect is run with (it filters what the export returns, as it does for eager).
EXPORT_THRESHOLD, EXPORT_MAX_DETECTIONS = 0.001, 300
#: Detections compared by the check: those a user could see, with a margin for float noise.
SHOWN, SCORE_TOLERANCE, MIN_IOU = 0.1, 0.02, 0.9
OUTPUTS = ("boxes", "labels", "scores")


def _modules():
    import torch
    from torch import nn

    class Outputs(nn.Module):
        """The detector on one image, its output dict as three tensors (for tracing)."""

        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, image):
            found = self.model([image])[0]
            return found["boxes"], found["labels"], found["scores"]

    class ScriptedOutputs(nn.Module):
        """The same for torch.jit.script, where a detector returns (losses, detections)."""

        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            _, detections = self.model([image])
            found = detections[0]
            return found["boxes"], found["labels"], found["scores"]

    return Outputs, ScriptedOutputs


def compare(eager, exported, half: bool) -> tuple[bool, dict, str]:
    """Every detection shown (score >= 0.1) on either side has a twin on the other: same label,
    IoU >= 0.9, score within 0.02. Order may differ among near-equal scores."""
    import torch
    from torchvision.ops import box_iou

    (eb, el, es), (xb, xl, xs) = [tuple(t.float().cpu() if t.is_floating_point() else t.cpu() for t in side) for side in (eager, exported)]
    worst, unmatched, total = 0.0, 0, 0
    for (ab, al, as_), (bb, bl, bs) in (((eb, el, es), (xb, xl, xs)), ((xb, xl, xs), (eb, el, es))):
        for index in torch.nonzero(as_ >= SHOWN).flatten().tolist():
            total += 1
            candidates = (bl == al[index]) & ((bs - as_[index]).abs() <= SCORE_TOLERANCE)
            if len(bb) and candidates.any():
                ious = box_iou(ab[index:index + 1], bb)[0].masked_fill(~candidates, 0)
                best = int(ious.argmax())
                if ious[best] >= MIN_IOU:
                    worst = max(worst, float((ab[index] - bb[best]).abs().max()))
                    continue
            unmatched += 1
    report = {"max_abs_error": worst, "top1_agreement": 1.0 if total == 0 else (total - unmatched) / total,
              "detections": int((es >= SHOWN).sum())}
    if unmatched:
        return False, report, f"{unmatched} of {total} shown detections have no twin (same label, IoU >= {MIN_IOU}, score within {SCORE_TOLERANCE})"
    return True, report, ""


def exportable(*, checkpoint, model, weights, samples):
    import copy

    import torch

    from ptcli.exporting.spec import Exportable, predictor_inputs, sample_image, sidecar

    from . import RECIPE
    from .models import configure_inference, has_masks, load_detector
    from .predictor import Detector

    loaded = load_detector(model, weights, checkpoint)
    net = copy.deepcopy(loaded.model).eval()
    if has_masks(net):
        from ptcli.errors import UsageError

        raise UsageError("Mask R-CNN models do not export yet (their masks are pasted in Python); export a box detector")
    configure_inference(net, EXPORT_THRESHOLD, EXPORT_MAX_DETECTIONS)
    Outputs, ScriptedOutputs = _modules()
    # The command's own decode and preprocess give the pixels the detector sees.
    images = predictor_inputs(Detector(loaded, torch.device("cpu")), samples or [sample_image()])

    def sample(n: int):
        # The photo as it is, then cropped to other sizes: the export is traced on the first
        # and must take any size.
        out = []
        for i in range(n):
            image = images[i % len(images)]
            k = i // len(images)
            out.append(image if k == 0 else image[:, : max(32, image.shape[1] * 3 // (3 + k)), : max(32, image.shape[2] * 2 // (2 + k))])
        return out if n > 1 else out[:1]

    names = loaded.categories.names
    meta = sidecar(RECIPE.name, checkpoint, model=model, preprocessing={})
    if checkpoint is None:  # a named model: its labels are COCO's (or the weights' own) output indices
        meta["classes"], meta["category_ids"] = list(names[1:]), list(loaded.categories.ids[1:])
    reason = ("detect cannot export to exported-program: torch.export stops at torchvision detectors' data-dependent "
              "shapes (pytorch/vision#9306); use --format onnx, openvino or torchscript")
    return Exportable(module=Outputs(net), input_names=("image",), output_names=OUTPUTS, sample=sample, meta=meta,
                      dynamic={"image": {1: "height", 2: "width"}, "boxes": {0: "detections"},
                               "labels": {0: "detections"}, "scores": {0: "detections"}},
                      batched=False, output=compare, unsupported={"exported-program": reason},
                      torchscript_methods=("script",), onnx_exporter="torchscript", scriptable=ScriptedOutputs(net),
                      runtime="detector", imports=("torchvision",))


class ExportedDetector:
    """An export as detect's commands use a detector: a list of images in, a list of dicts out."""

    def __init__(self, exported) -> None:
        self.exported = exported
        self.meta = exported.meta

    def to(self, device):
        self.exported.to(device)
        return self

    def eval(self):
        return self

    def __call__(self, images):
        return [dict(zip(OUTPUTS, self.exported(image))) for image in images]


def runtime(exported) -> ExportedDetector:
    return ExportedDetector(exported)
